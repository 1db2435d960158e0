"""How the manifest describes ports: names as Amaranth writes them into the Verilog."""


def clock_and_reset():
    return [
        {"name": "clk", "direction": "in", "width": 1},
        {"name": "rst", "direction": "in", "width": 1, "note": "synchronous, active high"},
    ]


def stream_port(name, direction, width, packing):
    """Manifest entry of a valid/ready stream port as Amaranth names its Verilog signals."""
    return {
        "name": name, "direction": direction, "protocol": "valid/ready",
        "signals": {f"{name}__payload": width, f"{name}__valid": 1, f"{name}__ready": 1},
        "payload_width": width, "payload": packing,
    }
