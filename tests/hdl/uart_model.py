"""A bit-level model of the far end of a UART line, for Amaranth testbenches."""


async def send_byte(ctx, line, byte, bit_clocks, *, stop=1):
    """Drive one 8N1 frame on `line`; `bit_clocks` may be fractional (a baud-rate mismatch)."""
    bits = [0] + [(byte >> i) & 1 for i in range(8)] + [stop]
    elapsed, edge = 0.0, 0
    for bit in bits:
        ctx.set(line, bit)
        elapsed += bit_clocks
        while edge < round(elapsed):
            await ctx.tick()
            edge += 1
    ctx.set(line, 1)


async def send_bytes(ctx, line, data, bit_clocks):
    for byte in data:
        await send_byte(ctx, line, byte, bit_clocks)


async def hold_low(ctx, line, clocks):
    ctx.set(line, 0)
    await ctx.tick().repeat(clocks)
    ctx.set(line, 1)


async def receive_byte(ctx, line, divisor, *, timeout=None):
    """Wait for a start bit on `line` and decode one frame sampled mid-bit; None on timeout.

    Asserts a correct start and stop bit."""
    waited = 0
    while ctx.get(line):
        await ctx.tick()
        waited += 1
        if timeout is not None and waited > timeout:
            return None
    await ctx.tick().repeat(divisor // 2)
    assert ctx.get(line) == 0, "start bit too short"
    byte = 0
    for i in range(8):
        await ctx.tick().repeat(divisor)
        byte |= ctx.get(line) << i
    await ctx.tick().repeat(divisor)
    assert ctx.get(line) == 1, "missing stop bit"
    return byte
