"""The appliance around the voice loop: systemd's notify protocol and watchdog, the status the daemon
publishes, and (later modules) the buttons and the LED. Reads the daemon's state; never drives the model."""
