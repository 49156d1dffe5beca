"""Container networking: bridges, veth pairs, IPAM, nftables (masquerade, published ports, isolation) and the
embedded DNS responder. No imports of the engine or front ends; pyroute2 is imported lazily (CLI start-up)."""
