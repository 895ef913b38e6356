#!/usr/bin/env python3
"""Connects once and says who answered: demo-probe.py tcp|udp HOST PORT"""
import socket
import sys

proto, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
s = socket.socket(socket.AF_INET, kind)
s.settimeout(3)
try:
    s.connect((host, port))
    if proto == "udp":
        s.send(b"hello")
    answer = s.recv(100).decode().strip()
    print(f"{proto} {host}:{port} -> {answer}")
except ConnectionRefusedError:
    print(f"{proto} {host}:{port} -> refused")
except socket.timeout:
    print(f"{proto} {host}:{port} -> no answer")
