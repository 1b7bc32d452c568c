"""A linear echo canceller (no suppressor) whose residual keeps the user's own speech intact.

AEC3 (aec.py) removes the echo well, but its nonlinear suppressor also attenuates the user talking over
the answer by 3-40 dB, and with no echo path at all (a headset) by 20-50 dB. A barge-in detector needs to
hear the user at their true level, and double talk should be sent as spoken: that takes a purely linear
filter, which can only subtract what it predicts from the far end and so leaves near-end speech alone.

A long filter spanning every possible delay (0-200 ms of lead plus the room's tail) learns too slowly on
speech, so this works in two parts:
- a delay estimator: GCC-PHAT between the mic and the far end, decimated to 4 kHz, over the last second,
  every quarter second. The whitening makes the direct path a sharp peak on speech, whose own spectrum
  would otherwise smear it. Only a confident peak moves the filter, so double talk and a missing echo path
  (no peak at all) leave it where it was;
- a short frequency-domain filter (96 ms, one partition slid by a capture frame, so no added latency)
  starting a few ms before that delay, as a two-path pair (Valin 2007, Speex MDF): a background
  filter adapts fast with a large normalised step, and the foreground, which makes the output, takes its
  coefficients only when it has cancelled measurably more over the last ~100 ms. Near-end speech makes the
  background wander, never the output; a background much worse than the foreground is reset from it. With
  no echo path the background never beats an empty foreground, so the mic passes through unchanged.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ..pcm import RATE, Int16Array

Complex = npt.NDArray[np.complex128]
Floats = npt.NDArray[np.float64]

FFT_SIZE = 2048
"""The filter's transform: a power of two (numpy's FFT of 2048 points costs 60% of one of 3840), holding the
filter and a frame of up to 512 samples (the 30 ms period's 480)."""
FILTER_S = 0.096
"""What the filter spans past its start: the direct path and the room's tail to about -35 dB in the bench's
rooms (AEC3's own linear filter spans 52 ms and leaves the rest to its suppressor)."""
MARGIN_S = 0.008
"""The filter starts this much before the estimated direct path: a coarse estimate and clock drift."""
MAX_DELAY_S = 0.200
"""The largest lead of the reference over the echo the estimator looks for."""
DECIMATE = 4
WINDOW_S = 1.0
"""The delay estimator's window of mic and far end."""
ESTIMATE_EVERY_S = 0.25
PEAK_RATIO = 8.0
"""A correlation peak this many times the spread of the rest counts as a delay (a guess, measured on rooms
with and without echo: a real direct path scores 8-14, none at all under 6)."""
MU = 1.0
"""The background's normalised step (per bin, against the transform's power: a frame of 480 in 2048 moves it
about a quarter of the way)."""
SMOOTH = 0.7
"""Per frame, for the error energies the two paths are compared by (about 100 ms at 30 ms frames)."""
COPY_GAIN = 0.7
"""The background replaces the foreground when its error energy is this much lower (-1.5 dB)."""
RESET_GAIN = 8.0
"""The background is reset from the foreground when its error is this much higher (+9 dB): diverged."""
CONSTRAIN_EVERY = 4
"""Steps between two projections of the background onto a linear convolution (two FFTs each). Speex's MDF
projects every other step; every fourth cancels within 1 dB of that in the tests' rooms (measured early and
late in four rooms), for a tenth less CPU."""
REG = 0.05
POWER_SMOOTH = 0.7
FAR_FLOOR = 1e-4
"""Far-end RMS below this is silence: nothing to learn from."""


class LinearEcho:
    """`process(near, far)`: one capture frame and its far-end reference (16 kHz int16, the reference leading
    the echo by 0-200 ms, as `FarEnd.take` gives it) in, (residual, echo estimate) as floats in [-1, 1) out."""

    def __init__(self, frame_samples: int) -> None:
        assert frame_samples % DECIMATE == 0
        self.block = frame_samples
        self.taps = round(FILTER_S * RATE)
        self.nfft = FFT_SIZE
        assert self.nfft >= self.taps + frame_samples
        self.margin = round(MARGIN_S * RATE)
        self.max_delay = round(MAX_DELAY_S * RATE)
        self.delay = 0
        """Where the filter starts: samples the reference is held back by (the direct path is ~margin later)."""
        self.delay_found = False
        self._hist = np.zeros(self.max_delay + self.nfft)
        bins = self.nfft // 2 + 1
        self._w = np.zeros((2, bins), complex)  # the foreground (output) filter and the background (learning)
        self._wf: Complex = self._w[0]
        self._wb: Complex = self._w[1]
        self._err = np.zeros(self.nfft)  # the error, zero-padded in front, for the gradient
        self._power = np.zeros(bins)
        self._sf = self._sb = 0.0
        self._pmic = self._pres = 1e-10
        # Delay estimator, decimated.
        nd = round(WINDOW_S * RATE) // DECIMATE
        self._lags = self.max_delay // DECIMATE
        self._dmic = np.zeros(nd)
        self._dfar = np.zeros(nd + self._lags)
        self._nfft = 1 << int(np.ceil(np.log2(nd + self._lags)))
        self._band = round(self._nfft / 2 * 0.8)  # PHAT bins below 1.6 kHz: above, block-mean aliasing
        self._since = 0
        self._updates = 0
        self.powers = (0.0, 0.0)
        """The last frame's mean square (full scale 1) of the mic and of the residual."""
        self.far_active = False
        """The far end played in the last frame (RMS over FAR_FLOOR): the filter learned from it."""

    @property
    def erle_db(self) -> float:
        """Smoothed mic-to-residual power while the far end plays: how much echo the output has lost (it
        drops during double talk, where the residual is the user)."""
        return float(10 * np.log10(self._pmic / self._pres))

    @property
    def foreground(self) -> Complex:
        """The output filter's frequency response (the taps from `delay` on, `nfft`-point FFT bins)."""
        return self._wf

    @property
    def converged(self) -> bool:
        return self.delay_found and self.erle_db > 15.0

    def process(self, near: Int16Array, far: Int16Array) -> tuple[Floats, Floats]:
        b, n = self.block, self.nfft
        assert len(near) == len(far) == b
        mic = near.astype(np.float64) / 32768.0
        x = far.astype(np.float64) / 32768.0
        self._hist[:-b] = self._hist[b:]
        self._hist[-b:] = x
        self._track_delay(mic, x)
        end = len(self._hist) - self.delay
        spec = np.fft.rfft(self._hist[end - n : end])
        y = np.fft.irfft(self._w * spec)[:, -b:]
        ef, eb = mic - y[0], mic - y[1]
        pm, pf, pb = float(mic @ mic), float(ef @ ef), float(eb @ eb)
        self.powers = (pm / b, pf / b)
        self.far_active = active = float(x @ x) > FAR_FLOOR**2 * b
        self._sf = SMOOTH * self._sf + (1 - SMOOTH) * pf
        self._sb = SMOOTH * self._sb + (1 - SMOOTH) * pb
        if active:
            self._adapt(spec, eb)
            if self._sb < COPY_GAIN * self._sf:
                self._wf[:] = self._wb
                self._sf = self._sb
            elif self._sb > RESET_GAIN * self._sf:
                self._wb[:] = self._wf
                self._sb = self._sf
            self._pmic = 0.9 * self._pmic + 0.1 * pm
            self._pres = 0.9 * self._pres + 0.1 * pf
        return ef, y[0]

    def _adapt(self, spec: Complex, e: Floats) -> None:
        """One normalised LMS step of the background filter, constrained to a linear convolution.

        One partition as long as the filter, slid by a frame each time (overlapped block LMS): a partitioned
        filter's few taps per bin see strongly correlated speech frames and learn 2-3 times slower."""
        err = self._err
        err[-len(e) :] = e
        now = spec.real**2 + spec.imag**2
        power = np.maximum(POWER_SMOOTH * self._power + (1 - POWER_SMOOTH) * now, now)
        self._power = power
        # The floor keeps bins the far end barely reaches from amplifying noise into the filter.
        step = MU / (power + (REG * float(power.mean()) + 1e-12))
        self._wb += spec.conj() * np.fft.rfft(err) * step
        self._updates += 1
        if self._updates % CONSTRAIN_EVERY == 1 % CONSTRAIN_EVERY:  # the wrap a few steps add is small
            w = np.fft.irfft(self._wb)
            w[self.taps :] = 0.0  # a circular-convolution wrap is not an echo path
            self._wb[:] = np.fft.rfft(w)

    # -- the delay ---------------------------------------------------------------------------------------
    def _track_delay(self, mic: Floats, far: Floats) -> None:
        n = len(mic) // DECIMATE
        self._dmic[:-n] = self._dmic[n:]
        self._dmic[-n:] = mic.reshape(-1, DECIMATE).sum(axis=1)  # block sums: the scale is PHAT's to lose
        self._dfar[:-n] = self._dfar[n:]
        self._dfar[-n:] = far.reshape(-1, DECIMATE).sum(axis=1)
        self._since += len(mic)
        if self._since < ESTIMATE_EVERY_S * RATE:
            return
        self._since = 0
        # A filter that cancels is where the echo is, whatever an estimate would say: one 8 ms off (the peak
        # of a sound the room colours) moved a converged filter off the echo, and its residual then looked
        # like the user talking. Only once it has stopped cancelling (the reference jumped, the room
        # changed) does a new estimate move it; until then none is made (three FFTs saved).
        if self.converged:
            return
        if float(np.mean(self._dfar[-len(self._dmic) :] ** 2)) < (DECIMATE * FAR_FLOOR) ** 2:
            return
        m = np.fft.rfft(self._dmic, self._nfft)
        f = np.fft.rfft(self._dfar, self._nfft)
        cross = np.conj(m) * f
        cross[self._band :] = 0.0
        cross /= np.abs(cross) + 1e-3 * float(np.max(np.abs(cross))) + 1e-20
        c = np.fft.irfft(cross)[: self._lags + 1]  # c[k]: mic against far k samples later (lag = lags - k)
        k = int(np.argmax(c))
        spread = float(np.std(np.delete(c, slice(max(0, k - 3), k + 4))))
        if float(c[k]) < PEAK_RATIO * max(spread, 1e-20):
            return
        new = min(max(0, (self._lags - k) * DECIMATE - self.margin), self.max_delay)
        if not self.delay_found or abs(new - self.delay) > self.margin // 2:
            self._move(new)
        self.delay_found = True

    def _move(self, new: int) -> None:
        """Start the filter at `new`. Before it has learned anything useful the old estimate was just wrong:
        shift the taps to keep what they hold at the same lag. After, a moved peak means the reference itself
        jumped (the far end's timeline was re-spliced): the echo path's shape still holds, so keep the taps."""
        if not self.converged:
            shift = new - self.delay
            for w in (self._wf, self._wb):
                taps = np.fft.irfft(w)
                taps = np.roll(taps, -shift)
                taps[self.taps :] = 0.0
                w[:] = np.fft.rfft(taps)
        self.delay = new
