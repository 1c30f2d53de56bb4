"""A stand-in for the company's "loyalty & support chat" system: an HTTP source
speaking the protocol described in requests_app/sources/http.py.

    DEMO_HTTP_SECRET=... python -m requests_app.sources.demo_http --port 8765 --data PATH

It serves `POST /privacy` (the source URL is http://127.0.0.1:<port>/privacy) and keeps
its records in the JSON file PATH (seeded with a few people if missing). A person is
matched by email (case-insensitive) or loyalty account number; erase really removes
their records from the file. Requests without a valid signature get 401.

For tests, `POST /_control` with {"mode": "ok" | "fail500" | "timeout" | "async"}
switches fault modes (unsigned: bind it to localhost only): fail500 answers 500,
timeout waits 30 s before answering, async answers 202 and ~0.2 s later POSTs the
signed reply to callback_url. `HEAD /privacy` (the portal's health probe) answers
204, or as the mode says (500; 30 s of silence), or as `probe_mode` says when set. Tests can run it in-process with
DemoHttpService, which counts the signed calls it was sent (`calls`).

It plays a system outside the portal: a standard-library server that shares only the
signing functions with the portal and never touches Django settings.
"""

import argparse
import hashlib
import json
import os
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from requests_app.sources.http import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, verify_signature

PATH = "/privacy"
MODES = ("ok", "fail500", "timeout", "async")
SECRET_ENV = "DEMO_HTTP_SECRET"
DEFAULT_SECRET = "demo-http-secret"
DEFAULT_EMAILS = ["pat.doe@example.com", "sam.lee@example.com", "alex.kim@example.com"]
MAX_BODY = 1_000_000

CATEGORIES = {
    "loyalty_points": {
        "email": "user.contact.email",
        "account_number": "user.unique_id",
        "points": "user.behavior.purchase_history",
        "reason": "user.behavior.purchase_history",
        "date": "user.behavior.purchase_history",
    },
    "chat_messages": {
        "email": "user.contact.email",
        "sent_at": "user.content.private",
        "text": "user.content.private",
    },
}
REASONS = ["purchase", "birthday bonus", "referral"]
MESSAGES = ["Where is my order?", "Can I change my delivery address?", "Thanks for the help!"]


def seed(path, emails: list[str]) -> None:
    """Write 1-3 loyalty records and 0-2 chat messages per email (deterministic)."""
    data = {"loyalty_points": [], "chat_messages": [], "opt_outs": []}
    for email in emails:
        h = int(hashlib.sha256(email.lower().encode()).hexdigest(), 16)
        account = f"L{h % 10**8:08d}"
        for i in range(1 + h % 3):
            data["loyalty_points"].append({
                "email": email, "account_number": account, "points": 10 * (1 + (h >> i) % 50),
                "reason": REASONS[(h >> i) % 3], "date": f"2024-{1 + i * 4:02d}-{1 + h % 28:02d}",
            })
        for i in range((h // 3) % 3):
            data["chat_messages"].append({
                "email": email, "sent_at": f"2024-06-{10 + i:02d}T09:30:00Z",
                "text": MESSAGES[(h >> (i + 8)) % 3],
            })
    _write(Path(path), data)


# The field that dates each collection's records (what a Right to Know period filters).
DATED_BY = {"loyalty_points": "date", "chat_messages": "sent_at"}


def _gathered(found: dict, period) -> dict:
    """The gather reply; with a period ({"start", "end"}, ISO days), only the records
    dated in it, and "period_applied": true to say so."""
    if isinstance(period, dict):
        start, end = str(period.get("start", "")), str(period.get("end", ""))
        found = {name: [r for r in rs if start <= str(r[DATED_BY[name]])[:10] <= end]
                 for name, rs in found.items()}
    reply = {"collections": {name: {"categories": CATEGORIES[name], "records": rs}
                             for name, rs in found.items()}}
    if isinstance(period, dict):
        reply["period_applied"] = True
    return reply


def _write(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def _signed(secret: bytes, data: dict) -> tuple[bytes, dict]:
    body = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
    timestamp = str(int(time.time()))
    headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: timestamp,
               SIGNATURE_HEADER: sign(secret, timestamp, body)}
    return body, headers


class DemoHttpService:
    def __init__(self, data_path, secret: str | None = None, verbose: bool = False):
        self.data_path = Path(data_path)
        secret = os.environ.get(SECRET_ENV, DEFAULT_SECRET) if secret is None else secret
        if not secret:
            raise ValueError(f"{SECRET_ENV} is empty")
        self.secret = secret.encode()
        self.verbose = verbose
        self.mode = "ok"
        self.calls = 0  # signed POSTs received, whatever the mode
        self.probe_mode = None  # how HEAD answers, when not as `mode` says
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.server = None
        if not self.data_path.exists():
            self.data_path.parent.mkdir(parents=True, exist_ok=True)
            seed(self.data_path, DEFAULT_EMAILS)

    # --- lifecycle -----------------------------------------------------------------

    def start(self, port: int = 0, host: str = "127.0.0.1") -> int:
        """Serve in a daemon thread; the bound port."""
        self.stopping.clear()
        self.server = ThreadingHTTPServer((host, port), _Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.server.service = self
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self.server.server_address[1]

    def stop(self) -> None:
        self.stopping.set()  # wakes handlers sleeping in "timeout" mode
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        self.mode = mode

    # --- the records ---------------------------------------------------------------

    def answer(self, message: dict) -> dict:
        """The reply to one (verified) request; ValueError for an unknown action."""
        action, who = message.get("action"), message.get("identity") or {}
        with self.lock:
            data = json.loads(self.data_path.read_text(encoding="utf-8"))
            email = str(who.get("email") or "").lower()
            account = str(who.get("account_number") or "")
            emails = {email} - {""}
            emails |= {r["email"].lower() for r in data["loyalty_points"]
                       if account and r["account_number"] == account}

            def mine(record):
                return record["email"].lower() in emails or (
                    account and record.get("account_number") == account)

            found = {name: [r for r in data[name] if mine(r)] for name in CATEGORIES}
            total = sum(len(rs) for rs in found.values())
            if action == "gather":
                return _gathered(found, message.get("period"))
            if action == "plan_erasure":
                return {"delete": total, "retain": 0, "legal_basis": ""}
            if action == "remaining":
                return {"remaining": total}
            if action == "erase":
                for name in CATEGORIES:
                    data[name] = [r for r in data[name] if not mine(r)]
                _write(self.data_path, data)
                return {"deleted": total}
            if action == "correct":
                change = message.get("change") or {}
                for rs in found.values():
                    for record in rs:
                        record.update({k: v for k, v in change.items()
                                       if k in record and isinstance(v, str)})
                _write(self.data_path, data)
                return {"applied": True}
            if action == "opt_out":
                data["opt_outs"] = sorted(set(data.get("opt_outs", [])) | emails)
                _write(self.data_path, data)
                return {"applied": True}
        raise ValueError("unknown action")

    def call_back(self, message: dict) -> None:
        """Async mode: a moment later, POST the signed reply to the callback URL."""
        time.sleep(0.2)
        try:
            body, headers = _signed(self.secret, self.answer(message))
            req = urllib.request.Request(message["callback_url"], data=body, headers=headers)
            urllib.request.urlopen(req, timeout=10).close()
        except Exception as exc:  # a demo: report the kind of failure, no values
            if self.verbose:
                print(f"demo_http: callback failed ({type(exc).__name__})")


class _Handler(BaseHTTPRequestHandler):
    server_version = "DemoLoyaltyChat/1.0"

    def log_message(self, format, *args):
        if self.server.service.verbose:
            super().log_message(format, *args)

    def _reply(self, status: int, data: dict) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self):
        """The health probe: as healthy as the mode says."""
        service = self.server.service
        mode = service.probe_mode or service.mode
        if mode == "timeout" and service.stopping.wait(30):
            return
        self.send_response(500 if mode == "fail500" else 204)
        self.end_headers()

    def do_POST(self):
        service = self.server.service
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return self._reply(413, {"error": "too large"})
        raw = self.rfile.read(length)
        if self.path == "/_control":
            try:
                service.set_mode(json.loads(raw)["mode"])
            except (ValueError, KeyError, TypeError):
                return self._reply(400, {"error": "bad mode"})
            return self._reply(200, {"mode": service.mode})
        if self.path != PATH:
            return self._reply(404, {"error": "not found"})
        if not verify_signature(service.secret, self.headers.get(TIMESTAMP_HEADER), raw,
                                self.headers.get(SIGNATURE_HEADER)):
            return self._reply(401, {"error": "bad signature"})
        try:
            message = json.loads(raw)
            if not isinstance(message, dict):
                raise ValueError
        except ValueError:
            return self._reply(400, {"error": "bad JSON"})
        with service.lock:
            service.calls += 1
        mode = service.mode
        if mode == "fail500":
            return self._reply(500, {"error": "simulated failure"})
        if mode == "timeout" and service.stopping.wait(30):
            return  # shutting down: drop the connection
        if mode == "async":
            threading.Thread(target=service.call_back, args=(message,), daemon=True).start()
            return self._reply(202, {"accepted": True})
        try:
            return self._reply(200, service.answer(message))
        except ValueError:
            return self._reply(400, {"error": "unknown action"})


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--data", required=True, help="JSON file of records (seeded if missing)")
    args = parser.parse_args(argv)
    service = DemoHttpService(args.data, verbose=True)
    port = service.start(args.port, args.host)
    print(f"demo loyalty & support chat service on http://{args.host}:{port}{PATH}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        service.stop()


if __name__ == "__main__":
    main()
