#!/usr/bin/env python3
"""A toy service for the demo: answers every TCP connection or UDP datagram
with its name. Usage: demo-service.py NAME tcp|udp HOST PORT

UDP note: a socket that receives datagrams steered to it by the dispatcher
must answer from the address the client used, not its own bind address.
IP_PKTINFO tells it that address and sets it as the source of the reply.
"""
import socket
import struct
import sys

IP_PKTINFO = 8  # linux/in.h

name, proto, host, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
if proto == "tcp":
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(64)
    print(f"{name}: listening on tcp {host}:{port}", flush=True)
    while True:
        conn, _ = s.accept()
        with conn:
            conn.sendall(name.encode() + b"\n")
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
    s.bind((host, port))
    print(f"{name}: bound on udp {host}:{port}", flush=True)
    while True:
        data, anc, _, peer = s.recvmsg(2048, socket.CMSG_SPACE(12))
        reply_from = []
        for level, kind, value in anc:
            if level == socket.IPPROTO_IP and kind == IP_PKTINFO:
                _ifindex, _spec, dst = struct.unpack("i4s4s", value[:12])
                reply_from = [(socket.IPPROTO_IP, IP_PKTINFO, struct.pack("i4s4s", 0, dst, b"\0" * 4))]
        s.sendmsg([name.encode() + b"\n"], reply_from, 0, peer)
