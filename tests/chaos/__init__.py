"""Chaos tier: the real operator process killed, its apiserver restarted, hostile specs."""
