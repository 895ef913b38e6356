#!/usr/bin/env python3
"""Connects once and says who answered: demo-probe.py tcp|udp HOST PORT [FROM]

FROM, a local address, is the source to connect from (the socket is bound to
it first), to show traffic from several places on loopback alone.

UDP asks from an unconnected socket: a service that receives datagrams for
many ports answers from its own port, which a connected socket would drop.
IP_RECVERR still reports an ICMP port unreachable as a refusal.
"""
import socket
import sys

IP_RECVERR = 11  # linux/in.h

proto, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
source = sys.argv[4] if len(sys.argv) > 4 else None
what = f"{proto} {host}:{port}" + (f" from {source}" if source else "")
kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
s = socket.socket(socket.AF_INET, kind)
s.settimeout(3)
if source:
    s.bind((source, 0))
try:
    if proto == "tcp":
        s.connect((host, port))
    else:
        s.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        s.sendto(b"hello", (host, port))
    answer = s.recv(100).decode().strip()
    print(f"{what} -> {answer}")
except ConnectionRefusedError:
    print(f"{what} -> refused")
except socket.timeout:
    print(f"{what} -> no answer")
