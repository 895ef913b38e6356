#!/usr/bin/env python3
"""Connects once and says who answered: demo-probe.py tcp|udp HOST PORT

UDP asks from an unconnected socket: a service that receives datagrams for
many ports answers from its own port, which a connected socket would drop.
IP_RECVERR still reports an ICMP port unreachable as a refusal.
"""
import socket
import sys

IP_RECVERR = 11  # linux/in.h

proto, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
s = socket.socket(socket.AF_INET, kind)
s.settimeout(3)
try:
    if proto == "tcp":
        s.connect((host, port))
    else:
        s.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        s.sendto(b"hello", (host, port))
    answer = s.recv(100).decode().strip()
    print(f"{proto} {host}:{port} -> {answer}")
except ConnectionRefusedError:
    print(f"{proto} {host}:{port} -> refused")
except socket.timeout:
    print(f"{proto} {host}:{port} -> no answer")
