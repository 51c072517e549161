"""The SoundsRight model container API (same file in every example model).

GET /status/, POST /prepare/, POST /upload-audio/ (multipart field ``files``), POST /enhance/,
GET /download-enhanced/ (a zip of the enhanced WAVs, same names), POST /reset/.
Listens on 0.0.0.0:6500. Writes only below $WORK_DIR (default /tmp/work): the validator runs
the container with a read-only root filesystem and a tmpfs at /tmp.
"""

import io
import os
import shutil
import zipfile
from pathlib import Path

import soundfile as sf
import uvicorn
from fastapi import FastAPI, File, HTTPException, UploadFile
from fastapi.responses import Response

from model import enhance

WORK = Path(os.environ.get("WORK_DIR", "/tmp/work"))
NOISY, ENHANCED = WORK / "noisy", WORK / "enhanced"
app = FastAPI()


def _listing(d):
    return sorted(p.name for p in d.glob("*.wav")) if d.is_dir() else []


@app.get("/status/")
def status():
    return {"container_running": True}


@app.post("/prepare/")
def prepare():
    for d in (NOISY, ENHANCED):
        d.mkdir(parents=True, exist_ok=True)
    return {"preparations": True}


@app.post("/upload-audio/")
async def upload(files: list[UploadFile] = File(...)):
    NOISY.mkdir(parents=True, exist_ok=True)
    names = []
    for f in files:
        name = os.path.basename(f.filename or "")
        if not name.endswith(".wav"):
            raise HTTPException(400, f"not a .wav name: {name!r}")
        (NOISY / name).write_bytes(await f.read())
        names.append(name)
    return {"uploaded_files": names, "status": True}


@app.post("/enhance/")
def run_enhance():
    ENHANCED.mkdir(parents=True, exist_ok=True)
    for name in _listing(NOISY):
        audio, rate = sf.read(NOISY / name, dtype="float64", always_2d=False)
        out = enhance(audio, rate)
        sf.write(ENHANCED / name, out, rate, subtype="PCM_16")
    return {"status": True}


@app.get("/download-enhanced/")
def download():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in _listing(ENHANCED):
            zf.write(ENHANCED / name, arcname=name)
    return Response(buf.getvalue(), media_type="application/zip")


@app.post("/reset/")
def reset():
    for d in (NOISY, ENHANCED):
        shutil.rmtree(d, ignore_errors=True)
    return {"status": True, "noisy": _listing(NOISY), "enhanced": _listing(ENHANCED)}


if __name__ == "__main__":
    uvicorn.run(app, host="0.0.0.0", port=6500, log_level="warning")
