"""Fakes of the cloud providers on 127.0.0.1, reusable by any test (see base.py for the hooks):

- `openai.FakeOpenAIRealtime`: plain websocket, `model.endpoint = fake.url`;
- `gemini.FakeGeminiLive`: websocket over TLS with a self-signed certificate, `model.endpoint = fake.url` and
  `SSL_CERT_FILE = fake.cert`;
- `nova.FakeNovaSonic`: the AWS SDK client seam, `fake.install(monkeypatch)`;
- `agent`: a reader that keeps every event of a real BidiAgent, bounded waits, the stored messages.

Each plays a script of `base.Turn`s and records what it saw in `fake.seen`.
"""
