"""Hostile model repositories for the sandbox tests: the example server with one misbehaviour
chosen by ``mode.txt`` (the same image layers for all, so each build takes about a second)."""

from __future__ import annotations

import shutil
from pathlib import Path

from .podman import ROOT

PASSTHROUGH = ROOT / "examples/models/passthrough"

_HOSTILE = """
import io, os, socket, struct, time, zipfile
from fastapi.responses import Response, StreamingResponse
import server
MODE = open("/modelapi/app/mode.txt").read().split()
app = server.app

def _gateway():
    for line in open("/proc/net/route").read().splitlines()[1:]:
        f = line.split()
        if f[1] == "00000000":
            return socket.inet_ntoa(struct.pack("<L", int(f[2], 16)))
    # internal network: no default route; the gateway is .1 of our own subnet
    ip = socket.gethostbyname(socket.gethostname())
    return ip.rsplit(".", 1)[0] + ".1"

def _zip(entries):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return buf.getvalue()

def _outputs():
    return [(n, (server.NOISY / n).read_bytes()) for n in server._listing(server.NOISY)]

app.router.routes = [r for r in app.router.routes if getattr(r, "path", "") not in (
    "/enhance/", "/download-enhanced/")]

@app.post("/enhance/")
def enhance():
    mode = MODE[0]
    if mode == "hang":
        time.sleep(3600)
    if mode == "memory":
        blocks = []
        while True:
            blocks.append(bytearray(16 * 2**20))
    if mode == "forkbomb":
        n = 0
        for _ in range(2000):
            try:
                if os.fork() == 0:
                    time.sleep(30)
                    os._exit(0)
                n += 1
            except OSError:
                break
        return Response(f"forked {n} then the pids limit stopped us", status_code=500)
    if mode == "userns":
        import subprocess
        p = subprocess.run(["unshare", "-r", "id"], capture_output=True, text=True)
        return Response(f"unshare rc={p.returncode}: {p.stdout}{p.stderr}", status_code=500)
    if mode == "egress":
        s = socket.socket()
        s.settimeout(3)
        try:
            s.connect((_gateway(), int(MODE[1])))
            s.sendall(b"escaped")
            return {"status": True}
        except OSError as exc:
            return Response(f"egress blocked: {exc}", status_code=500)
    return {"status": True}

@app.get("/download-enhanced/")
def download():
    mode = MODE[0]
    outs = _outputs()
    if mode == "trickle":
        def gen():
            for _ in range(3600):
                yield b"P"
                time.sleep(1)
        return StreamingResponse(gen(), media_type="application/zip")
    if mode == "traversal":
        body = _zip([("../" + n, d) for n, d in outs])
    elif mode == "absolute":
        body = _zip([("/tmp/" + n, d) for n, d in outs])
    elif mode == "bomb":
        body = _zip([(n, d) for n, d in outs] + [("bomb.bin", b"\\0" * (64 * 2**20))])
    elif mode == "longname":
        body = _zip(outs + [("a" * 300 + ".wav", b"x")])
    elif mode == "conflict":
        body = _zip(outs + [("x", b"1"), ("x/y.wav", b"2")])
    elif mode == "corrupt":
        raw = bytearray(_zip(outs))
        at = 30 + len(outs[0][0].encode())  # the first member's deflate stream
        raw[at : at + 16] = b"\\xff" * 16
        body = bytes(raw)
    elif mode == "cdbomb":
        # a 116-byte archive whose end records claims 19.8M members in a 1 GiB directory
        body = b"PK\\x03\\x04" + b"\\0" * 14 + struct.pack(
            "<4s4H2LH", b"PK\\x05\\x06", 0, 0, 0xFFFF, 0xFFFF, 2**30, 0, 0)
        at = len(body) - 22
        rec64 = struct.pack("<4sQ2H2L4Q", b"PK\\x06\\x06", 44, 45, 45, 0, 0,
                            19_800_000, 19_800_000, 2**30, 0)
        loc = struct.pack("<4sLQL", b"PK\\x06\\x07", 0, at, 1)
        body = body[:at] + rec64 + loc + body[at:]
    elif mode == "cdbomb_real":
        # 200k empty stored members, written raw (zipfile takes over 10 s for this here)
        local, central = [], []
        off = 0
        for i in range(200_000):
            name = b"%06d" % i
            local.append(struct.pack("<4s5H3L2H", b"PK\\x03\\x04", 20, 0, 0, 0, 0, 0, 0, 0, 6, 0)
                         + name)
            central.append(struct.pack("<4s6H3L5H2L", b"PK\\x01\\x02", 20, 20, 0, 0, 0, 0, 0, 0,
                                       0, 6, 0, 0, 0, 0, 0, off) + name)
            off += 36
        cd = b"".join(central)
        rec64 = struct.pack("<4sQ2H2L4Q", b"PK\\x06\\x06", 44, 45, 45, 0, 0,
                            200_000, 200_000, len(cd), off)
        loc = struct.pack("<4sLQL", b"PK\\x06\\x07", 0, off + len(cd), 1)
        end = struct.pack("<4s4H2LH", b"PK\\x05\\x06", 0, 0, 0xFFFF, 0xFFFF, len(cd), off, 0)
        body = b"".join(local) + cd + rec64 + loc + end
    elif mode == "garbage":
        body = _zip([(n, b"not a wav file") for n, _ in outs])
    elif mode == "wrong_names":
        body = _zip([("x" + n, d) for n, d in outs])
    elif mode == "missing":
        body = _zip(outs[:-1])
    else:
        body = _zip(outs)
    return Response(body, media_type="application/zip")

if __name__ == "__main__":
    import uvicorn
    uvicorn.run(app, host="0.0.0.0", port=6500, log_level="warning")
"""


def hostile_repo(root: Path, mode: str, *extra: str, dockerfile: str | None = None) -> Path:
    """A model repo under ``root/mode`` that misbehaves as ``mode`` says."""
    repo = root / mode
    shutil.copytree(PASSTHROUGH, repo)
    (repo / "app/hostile.py").write_text(_HOSTILE)
    (repo / "app/mode.txt").write_text(" ".join((mode, *extra)))
    text = (PASSTHROUGH / "Dockerfile").read_text()
    text = text.replace("/modelapi/app/server.py", "/modelapi/app/hostile.py")
    (repo / "Dockerfile").write_text(dockerfile if dockerfile is not None else text)
    return repo
