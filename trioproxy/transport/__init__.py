"""Trio I/O shared by the client side (inbound) and the upstream side:
byte I/O on raw sockets or any trio Stream (``byteio``), the HTTP/2
connection writer (``h2writer``), and the one watchdog that keeps every
connection's deadlines (``watchdog``). Nothing here knows HTTP semantics.
"""
