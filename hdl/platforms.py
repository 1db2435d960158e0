"""The FPGA family a platform builds for, as the hardware's per-family choices ask it."""


def family_of(platform):
    """`platform`'s family in lower case ("ice40", "ecp5"), or "" with no platform (gen and
    simulation) or one that names none."""
    return str(getattr(platform, "family", "") or "").lower()
