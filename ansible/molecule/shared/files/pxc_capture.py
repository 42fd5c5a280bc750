"""Molecule verify helper, run on the machine: what crosses the test network in clear.

Captures every TCP packet on the scenario's Docker bridge for a while (AF_PACKET, root,
stdlib only) and judges the payloads without ever printing them: how many packets went
to or from each named port (every one must carry payload, so an empty capture cannot
pass), how many payloads contain one of the secrets given on stdin (one per line), and
how many contain a marker of a message that must not cross in clear (a task's name, an S3
request's signature header). Prints one JSON document; exit 0 means nothing leaked and
every port was seen.

  pxc_capture.py --iface br-1234567890ab --seconds 30 --port 6379 --port 26379 \
      --marker builder.tasks.crawl_task < secrets
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
IPPROTO_TCP = 6
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1


def tcp_segments(frame: bytes) -> tuple[int, int, bytes] | None:
    """(source port, destination port, payload) of an IPv4 TCP frame, else None."""
    if len(frame) < 14 or struct.unpack("!H", frame[12:14])[0] != ETH_P_IP:
        return None
    ip = frame[14:]
    if len(ip) < 20 or ip[9] != IPPROTO_TCP:
        return None
    ihl = (ip[0] & 0x0F) * 4
    total = struct.unpack("!H", ip[2:4])[0]
    tcp = ip[ihl:total]
    if len(tcp) < 20:
        return None
    sport, dport = struct.unpack("!HH", tcp[:4])
    offset = (tcp[12] >> 4) * 4
    return sport, dport, tcp[offset:]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iface", required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--port", type=int, action="append", required=True)
    p.add_argument("--marker", action="append", default=[])
    args = p.parse_args()
    secrets = [s.encode() for s in sys.stdin.read().splitlines() if s]
    markers = [m.encode() for m in args.marker]
    ports = set(args.port)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(ETH_P_ALL))
    sock.bind((args.iface, 0))
    # Promiscuous, as tcpdump makes it: a bridge hands its host only the frames addressed
    # to the host, not those it forwards between the containers.
    mreq = struct.pack("iHH8s", socket.if_nametoindex(args.iface), PACKET_MR_PROMISC, 0, b"")
    sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
    sock.settimeout(0.5)
    seen = {"packets": 0, "port_packets": 0, "port_payload_bytes": 0}
    per_port = dict.fromkeys(sorted(ports), 0)
    hits = {"secret": 0, "marker": 0}
    # A secret or marker split over two segments: keep the tail of each flow's last payload.
    tails: dict[tuple[int, int], bytes] = {}
    longest = max((len(x) for x in secrets + markers), default=1)
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        try:
            frame = sock.recv(65535)
        except TimeoutError:
            continue
        segment = tcp_segments(frame)
        if segment is None:
            continue
        sport, dport, payload = segment
        seen["packets"] += 1
        if sport in ports or dport in ports:
            seen["port_packets"] += 1
            seen["port_payload_bytes"] += len(payload)
            per_port[sport if sport in ports else dport] += len(payload)
        if not payload:
            continue
        flow = (sport, dport)
        window = tails.get(flow, b"") + payload
        tails[flow] = window[-longest:]
        hits["secret"] += any(s in window for s in secrets)
        hits["marker"] += any(m in window for m in markers)
    ok = all(per_port.values()) and not hits["secret"] and not hits["marker"]
    doc = {**seen, "payload_bytes_by_port": per_port, **{f"{k}_hits": v for k, v in hits.items()}}
    print(json.dumps({**doc, "ok": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
