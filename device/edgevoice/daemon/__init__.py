"""The asyncio daemon: wires capture, gate, model, playback and the session store."""
