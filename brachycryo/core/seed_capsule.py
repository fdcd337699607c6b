"""Nominal geometry of an I-125 seed capsule, shared by the CT phantom and seed detection.

Titanium capsule of e.g. the Oncura/GE 6711 and 6702 seeds: 4.5 mm long, 0.8 mm outer
diameter (Rivard et al., AAPM TG-43U1, Med. Phys. 31:633, 2004, section on the 6711).
"""

#: Capsule length, mm.
SEED_LENGTH_MM = 4.5
#: Capsule outer diameter, mm.
SEED_DIAMETER_MM = 0.8
