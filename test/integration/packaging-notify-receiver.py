# A stand-in for systemd's notification socket (NOTIFY_SOCKET) in the
# packaging tests: receives sd_notify datagrams and prints "<ms> <message>"
# per line. It closes the file descriptors systemd-notify passes with its
# BARRIER=1 message, as systemd does, so systemd-notify returns at once.
import array
import os
import socket
import sys
import time

s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("bound", flush=True)
while True:
    msg, anc, _flags, _addr = s.recvmsg(4096, socket.CMSG_SPACE(16 * 4))
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds = array.array("i")
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
            for fd in fds:
                os.close(fd)
    for line in msg.decode().splitlines():
        print(f"{int(time.time() * 1000)} {line}", flush=True)
