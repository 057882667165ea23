"""Fork server for the fault suite: imports torch and egm once, then runs each request in a forked
child as ``egm ARGS`` would (the console script calls ``egm_framework.cli:main``), in its own
process, working folder and environment, with stdout/stderr sent to files.

Protocol: one JSON object per line on stdin, {"argv", "cwd", "env", "stdout", "stderr"}; one line
{"rc": N} back per request. The parent never builds the registry or runs torch ops, so every child
starts from the same state a fresh ``egm`` process would.

Hostile environments, set up in the child before ``egm`` starts:
  "readonly": [DIR, ...]        DIR is read-only for the child (a read-only bind mount in a private
                                mount namespace when root, which ignores permission bits; else chmod)
  "readonly_after": [FILE, DIR] DIR becomes read-only as soon as FILE exists (while egm runs)
  "fsize_limit": N              no file can grow past N bytes (RLIMIT_FSIZE: a full disk for the child)
"""

import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
import traceback

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
import torch._dynamo  # noqa: E402,F401 - what torch.optim.Adam imports on first use (seconds)
import numpy  # noqa: E402,F401
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot  # noqa: E402,F401

import egm_framework.cli  # noqa: E402,F401
import egm_framework.evaluation  # noqa: E402,F401
import egm_framework.plots  # noqa: E402,F401
import egm_framework.trainer  # noqa: E402,F401

try:  # the plugins' modules (importing is not registering: each child discovers them itself)
    import egm_continuous.plugin  # noqa: F401
    import egm_discrete.plugin  # noqa: F401
    import egm_mixed.plugin  # noqa: F401
except ImportError:  # pragma: no cover
    pass


def _private_mounts() -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x00020000) != 0:  # CLONE_NEWNS
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS) failed")
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)


def _make_readonly(path: str, remount: bool = False) -> bool:
    if os.geteuid() != 0:
        for root, dirs, files in os.walk(path):
            for name in [*dirs, *files]:
                p = os.path.join(root, name)
                os.chmod(p, os.stat(p).st_mode & ~0o222)
        os.chmod(path, os.stat(path).st_mode & ~0o222)
        return True
    if remount:  # fails (busy) while a file of the mount is open for writing: the caller retries
        return subprocess.run(["mount", "-o", "remount,bind,ro", path], capture_output=True).returncode == 0
    subprocess.run(["mount", "--bind", "-o", "ro", path, path], check=True)
    return True


def _readonly_after(wait_for: str, path: str) -> None:
    if os.geteuid() == 0:
        subprocess.run(["mount", "--bind", path, path], check=True)

    def watch():
        while not os.path.exists(wait_for):
            time.sleep(0.01)
        while not _make_readonly(path, remount=True):
            time.sleep(0.005)

    threading.Thread(target=watch, daemon=True).start()


def child(req: dict) -> int:
    if (req.get("readonly") or req.get("readonly_after")) and os.geteuid() == 0:
        _private_mounts()
    for path in req.get("readonly") or ():
        _make_readonly(path)
    if req.get("readonly_after"):
        _readonly_after(*req["readonly_after"])
    if req.get("fsize_limit"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit then fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (req["fsize_limit"], req["fsize_limit"]))
    os.chdir(req["cwd"])
    os.environ.update(req["env"])
    for p in reversed(req["env"].get("PYTHONPATH", "").split(os.pathsep)):
        if p:
            sys.path.insert(0, p)
    for fd, path in ((1, req["stdout"]), (2, req["stderr"])):
        f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(f, fd)
        os.close(f)
    sys.argv = ["egm", *req["argv"]]
    try:
        code = egm_framework.cli.main(req["argv"])
    except SystemExit as exc:  # what the interpreter does with it
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:  # noqa: BLE001 - an uncaught exception prints its traceback, exit 1
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    return int(code)


def main() -> None:
    for line in sys.stdin:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = child(req)
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"rc": os.waitstatus_to_exitcode(status)}), flush=True)


if __name__ == "__main__":
    main()
