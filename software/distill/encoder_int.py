"""One BERT encoder layer of the distilled MiniLM-L6 in integers: the golden model of the layer that
runs through the hardware (issue 25 item 4).

Every value between the layer's input and its output is an integer with a power-of-two scale
2**e (e is the value's *exponent*); rescaling is a shift with round-half-up and saturation
(software/frontend/quant.py's contract, `requant` below). Signed b-bit values lie in
[-(2**(b-1) - 1), 2**(b-1) - 1].

Stages (n tokens, hidden H = heads * d, FFN width I); [array] and [attention] run on the hardware,
everything else is the integer host model here:

  h0   = the layer's input, WIDE_BITS at e_in                     (quantize_input)
  x0   = requant(h0) to int8 at e_x0
  q, k, v acc = x0 W^T                                            [array] query, key, value (H x H, dense)
  q, k = acc + bias, requantized to int8 per head (e_q[h], e_k[h]); v to int8 at e_v (per tensor)
  ctx  = per head: the attention unit's integer softmax(q k^T / sqrt(d)) v, int8 at e_v
                                                                  [attention] software/golden/attention.py
  o    = ctx W_o^T                                                [array] attention output (H x H, dense)
  r1   = requant(o + bias) + requant(h0), WIDE_BITS at e_r1       (residual add)
  h1   = LayerNorm(r1), WIDE_BITS at e_h1                         (integer layer norm, `IntLayerNorm`)
  x1   = requant(h1) to int8 at e_x1
  pre  = x1 W_i^T + bias, requantized to GELU_BITS at e_pre       [array] intermediate (I x H, column-combined)
  g    = GELU table[pre], int8 at e_g                             (a 2**GELU_BITS-entry table)
  r2   = requant(g W_2^T + bias) + requant(h1), WIDE_BITS at e_r2 [array] output (H x I, column-combined)
  h2   = LayerNorm(r2), WIDE_BITS at e_out                        the layer's output

Weights are int8 per output channel with power-of-two scales (exactly the student's
quantization-aware format for the FFN matrices), biases integers at the accumulator's scale. The
activation exponents come from `calibrate`: the largest magnitude of each value over the float
layer run on calibration inputs (training sentences; never the held-out sentence a result is
reported on), rounded up to a power of two as software/frontend/quant.compute_scale does.

The matrix products and the attention go through a *backend*: `GOLDEN` computes them with numpy
(x @ W^T, software.golden.attention.golden_head); sim/encoder.py puts them on the generated array
and attention unit in Verilator. Everything else is computed here either way, so a run through the
hardware equals the golden run stage by stage iff the hardware's results do.
"""

import dataclasses
import math

import numpy as np

WIDE_BITS = 16           # host fixed-point values: residual sums and layer-norm outputs
GELU_BITS = 12           # the GELU table's input (2**12 entries)
DATA_BITS = 8            # what the array and the attention unit take
LN_FRACTION_BITS = 12    # fraction bits of the normalized value (x - mean) / std
LN_GUARD_BITS = 8        # extra bits of the standard deviation's integer square root
GAMMA_BITS = 16          # layer-norm gain


# ---------------------------------------------------------------------------------------------
# Integer primitives

def qmax(bits):
    return (1 << (bits - 1)) - 1


def saturate(x, bits):
    return np.clip(np.asarray(x, dtype=np.int64), -qmax(bits), qmax(bits))


def requant(x, shift, bits):
    """x * 2**-shift with round half up, saturated to signed `bits` (shift: int or broadcastable
    array; a negative shift is a left shift). Integer in, integer out (int64)."""
    x = np.asarray(x, dtype=np.int64)
    shift = np.broadcast_to(np.asarray(shift, dtype=np.int64), x.shape)
    if np.abs(shift).max(initial=0) > 40:
        raise ValueError("requant: |shift| must be at most 40")
    right = np.maximum(shift, 0)
    half = np.where(right > 0, np.int64(1) << np.maximum(right - 1, 0), 0)
    out = np.where(shift >= 0, (x + half) >> right, x << np.maximum(-shift, 0))
    return saturate(out, bits)


def quantize(x, exponent, bits):
    """Float to integer at scale 2**exponent: saturate(floor(x / 2**e + 1/2)); exact division."""
    scaled = np.asarray(x, dtype=np.float64) * np.ldexp(1.0, -np.asarray(exponent, dtype=np.int64))
    return saturate(np.floor(scaled + 0.5), bits)


def exponent_for(max_abs, bits):
    """The smallest e with max_abs <= qmax(bits) * 2**e (0 for an all-zero value): the power-of-two
    scale compute_scale(power_of_two=True) picks, as an exponent."""
    max_abs = float(max_abs)
    if not max_abs > 0:
        return 0
    mantissa, e = math.frexp(max_abs / qmax(bits))      # ratio = mantissa * 2**e, mantissa in [0.5, 1)
    return e - 1 if mantissa == 0.5 else e


def round_div(num, den):
    """floor(num / den + 1/2) for integers, den > 0 (round half up)."""
    return (2 * num + den) // (2 * den)


# ---------------------------------------------------------------------------------------------
# Stages of the host model

@dataclasses.dataclass(frozen=True)
class IntLinear:
    """W (F x K int8, per-channel exponents) and the bias at the accumulator's scale 2**(e_in + e_w).
    `groups`: the column grouping the array packs it by (None: dense, one column per group)."""
    name: str
    weight: np.ndarray
    weight_exp: np.ndarray
    bias: np.ndarray
    input_exp: int
    groups: list | None = None

    @classmethod
    def from_float(cls, name, weight, bias, input_exp, groups=None):
        import torch
        from software.frontend.quant import compute_scale, power_of_two_exponent
        from software.frontend.quant import quantize as torch_quantize
        w = torch.as_tensor(weight, dtype=torch.float32)
        scale = compute_scale(w, DATA_BITS, per_channel=True, power_of_two=True)
        w_int = torch_quantize(w, scale, DATA_BITS).numpy().astype(np.int64)
        w_exp = power_of_two_exponent(scale).numpy().astype(np.int64)
        bias_int = quantize(np.asarray(bias, dtype=np.float64), input_exp + w_exp, 32)
        return cls(name=name, weight=w_int, weight_exp=w_exp, bias=bias_int, input_exp=int(input_exp),
                   groups=None if groups is None else [list(map(int, g)) for g in groups])

    @property
    def shape(self):
        return self.weight.shape

    def rescale(self, acc, out_exp, bits):
        """acc (n x F, the array's sums) plus the bias, at 2**out_exp (scalar or per channel)."""
        return requant(np.asarray(acc, dtype=np.int64) + self.bias, np.asarray(out_exp) - self.input_exp - self.weight_exp,
                       bits)


@dataclasses.dataclass(frozen=True)
class IntLayerNorm:
    """LayerNorm over the last axis of WIDE_BITS integers at 2**in_exp, out at 2**out_exp.

    mean  mu = round(sum h / H); c = h - mu
    std   r  = isqrt(floor(sum c**2 * 2**(2G) / H) + eps_int) ~ std * 2**G (in input units), >= 1
    norm  z  = round(c * 2**(N + G) / r) ~ (h - mean) / std * 2**N
    out   requant(gamma_int * z + beta_int) from 2**(gamma_exp - N) to 2**out_exp
    with N = LN_FRACTION_BITS, G = LN_GUARD_BITS, gamma at GAMMA_BITS and 2**gamma_exp, beta at
    the product's scale."""
    gamma: np.ndarray
    gamma_exp: int
    beta: np.ndarray
    eps: int
    in_exp: int
    out_exp: int

    @classmethod
    def from_float(cls, gamma, beta, eps, in_exp, out_exp):
        gamma, beta = np.asarray(gamma, np.float64), np.asarray(beta, np.float64)
        gamma_exp = exponent_for(np.abs(gamma).max(), GAMMA_BITS)
        return cls(gamma=quantize(gamma, gamma_exp, GAMMA_BITS), gamma_exp=gamma_exp,
                   beta=quantize(beta, gamma_exp - LN_FRACTION_BITS, 48),
                   eps=int(round(eps * 2.0 ** (2 * (LN_GUARD_BITS - in_exp)))), in_exp=int(in_exp), out_exp=int(out_exp))

    def __call__(self, h):
        h = np.asarray(h, dtype=np.int64)
        H = h.shape[-1]
        mu = round_div(h.sum(axis=-1, keepdims=True), H)
        c = h - mu
        # Python integers for the row sums of squares: exact at any width.
        sums = [int(s) for s in (c * c).sum(axis=-1).reshape(-1)]
        r = np.array([max(1, math.isqrt((s << (2 * LN_GUARD_BITS)) // H + self.eps)) for s in sums],
                     dtype=np.int64).reshape(mu.shape)
        z = round_div(c << (LN_FRACTION_BITS + LN_GUARD_BITS), r)
        return requant(self.gamma * z + self.beta, self.out_exp - (self.gamma_exp - LN_FRACTION_BITS), WIDE_BITS)


def gelu(x):
    """BERT's exact GELU, x * Phi(x), in float64."""
    x = np.asarray(x, dtype=np.float64)
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


@dataclasses.dataclass(frozen=True)
class GeluTable:
    """g = table[pre]: GELU_BITS integers at 2**in_exp in, int8 at 2**out_exp out; the table
    holds round(gelu(i * 2**in_exp) / 2**out_exp), saturated, for every input i."""
    in_exp: int
    out_exp: int
    table: np.ndarray

    @classmethod
    def build(cls, in_exp, out_exp):
        inputs = np.arange(-qmax(GELU_BITS), qmax(GELU_BITS) + 1)
        return cls(in_exp=int(in_exp), out_exp=int(out_exp),
                   table=quantize(gelu(np.ldexp(inputs.astype(np.float64), in_exp)), out_exp, DATA_BITS))

    def __call__(self, pre):
        pre = np.asarray(pre, dtype=np.int64)
        if pre.size and np.abs(pre).max() > qmax(GELU_BITS):
            raise ValueError(f"GELU input outside {GELU_BITS} bits")
        return self.table[pre + qmax(GELU_BITS)]


@dataclasses.dataclass(frozen=True)
class IntAttention:
    """Integer softmax attention on the unit: Q and K int8 per head, V int8 per tensor; each head's
    score factor (2**(e_q + e_k) / sqrt(d) * log2 e) as the unit's multiplier and shift."""
    config: object            # spec.attention.AttentionConfig
    heads: int
    q_exp: tuple
    k_exp: tuple
    v_exp: int
    mul: tuple
    shift: tuple

    @classmethod
    def build(cls, config, heads, q_exp, k_exp, v_exp):
        from software.golden.attention import score_scale
        factors = [2.0 ** (eq + ek) / math.sqrt(config.head_dim) * math.log2(math.e) for eq, ek in zip(q_exp, k_exp)]
        mul, shift = score_scale(config, factors)
        return cls(config=config, heads=heads, q_exp=tuple(map(int, q_exp)), k_exp=tuple(map(int, k_exp)),
                   v_exp=int(v_exp), mul=tuple(map(int, mul)), shift=tuple(map(int, shift)))

    def split(self, q, k, v):
        """Per head: (q, k, v, mul, shift) for the unit."""
        d = self.config.head_dim
        return [(q[:, h * d:(h + 1) * d], k[:, h * d:(h + 1) * d], v[:, h * d:(h + 1) * d], self.mul[h], self.shift[h])
                for h in range(self.heads)]


# ---------------------------------------------------------------------------------------------
# Backends: where the matrix products and the attention run

class GoldenBackend:
    """numpy: x @ W^T exactly, and the attention unit's golden model."""

    def matmul(self, linear, x):
        return np.asarray(x, dtype=np.int64) @ linear.weight.T

    def attention(self, attention, heads):
        from software.golden.attention import golden_head
        return [golden_head(attention.config, q, k, v, mul, shift).out for q, k, v, mul, shift in heads]


GOLDEN = GoldenBackend()

MATRICES = ("query", "key", "value", "attention_output", "intermediate", "output")


@dataclasses.dataclass(frozen=True)
class EncoderLayerInt:
    """The integer layer: its matrices, layer norms, GELU table, attention and exponents."""
    linears: dict             # MATRICES -> IntLinear
    attention: IntAttention
    ln1: IntLayerNorm
    ln2: IntLayerNorm
    gelu: GeluTable
    exps: dict                # the calibrated exponents by value name (see the module docstring)

    def quantize_input(self, x):
        """The float input hidden states (n x H) as the layer's integer input h0."""
        return quantize(x, self.exps["in"], WIDE_BITS)

    def output_float(self, h2):
        return np.ldexp(np.asarray(h2, dtype=np.float64), self.exps["out"])

    def run(self, h0, backend=GOLDEN):
        """Every stage's integers (a dict in stage order) for the integer input h0 (n x H)."""
        e, lin = self.exps, self.linears
        heads, d = self.attention.heads, self.attention.config.head_dim
        t = {"h0": np.asarray(h0, dtype=np.int64)}
        t["x0"] = requant(t["h0"], e["x0"] - e["in"], DATA_BITS)
        for name in ("query", "key", "value"):
            t[f"{name}_acc"] = backend.matmul(lin[name], t["x0"])
        t["q"] = lin["query"].rescale(t["query_acc"], np.repeat(self.attention.q_exp, d), DATA_BITS)
        t["k"] = lin["key"].rescale(t["key_acc"], np.repeat(self.attention.k_exp, d), DATA_BITS)
        t["v"] = lin["value"].rescale(t["value_acc"], e["v"], DATA_BITS)
        outs = backend.attention(self.attention, self.attention.split(t["q"], t["k"], t["v"]))
        t["ctx"] = np.concatenate([np.asarray(o, dtype=np.int64) for o in outs], axis=1)
        assert t["ctx"].shape[1] == heads * d
        t["attention_output_acc"] = backend.matmul(lin["attention_output"], t["ctx"])
        t["r1"] = saturate(lin["attention_output"].rescale(t["attention_output_acc"], e["r1"], WIDE_BITS)
                           + requant(t["h0"], e["r1"] - e["in"], WIDE_BITS), WIDE_BITS)
        t["h1"] = self.ln1(t["r1"])
        t["x1"] = requant(t["h1"], e["x1"] - e["h1"], DATA_BITS)
        t["intermediate_acc"] = backend.matmul(lin["intermediate"], t["x1"])
        t["pre"] = lin["intermediate"].rescale(t["intermediate_acc"], e["pre"], GELU_BITS)
        t["g"] = self.gelu(t["pre"])
        t["output_acc"] = backend.matmul(lin["output"], t["g"])
        t["r2"] = saturate(lin["output"].rescale(t["output_acc"], e["r2"], WIDE_BITS)
                           + requant(t["h1"], e["r2"] - e["h1"], WIDE_BITS), WIDE_BITS)
        t["h2"] = self.ln2(t["r2"])
        return t


# ---------------------------------------------------------------------------------------------
# From the float layer: calibration and construction

def effective_weight(module):
    """A Linear's weight as the student uses it: weight_orig * weight_mask where pruned."""
    if hasattr(module, "weight_mask"):
        return (module.weight_orig * module.weight_mask).detach()
    return module.weight.detach()


def float_stages(layer, x):
    """The float layer (an software.models.minilm._Layer; FFN weights masked, nothing quantized) on
    one sentence's hidden states x (n x H): the values the integer model quantizes, by name."""
    import torch
    f = torch.nn.functional
    att, heads = layer.attention, layer.heads
    x = torch.as_tensor(x, dtype=torch.float32)
    with torch.no_grad():
        lin = lambda m, a: f.linear(a, effective_weight(m), m.bias)
        q, k, v = (lin(att["self"][n], x) for n in ("query", "key", "value"))
        n, hidden = x.shape
        d = hidden // heads
        split = lambda a: a.view(n, heads, d).transpose(0, 1)
        probs = torch.softmax(split(q) @ split(k).transpose(1, 2) / math.sqrt(d), dim=-1)
        ctx = (probs @ split(v)).transpose(0, 1).reshape(n, hidden)
        r1 = lin(att["output"]["dense"], ctx) + x
        h1 = att["output"]["LayerNorm"](r1)
        pre = lin(layer.intermediate["dense"], h1)
        g = f.gelu(pre)
        r2 = lin(layer.output["dense"], g) + h1
        h2 = layer.output["LayerNorm"](r2)
    return {"in": x, "q": q, "k": k, "v": v, "ctx": ctx, "r1": r1, "h1": h1, "pre": pre, "g": g, "r2": r2, "out": h2}


def calibrate(layer, inputs):
    """Largest magnitudes of the float layer's values over calibration inputs (a list of n x H
    hidden states); q and k per head."""
    heads = layer.heads
    top = {}
    for x in inputs:
        values = float_stages(layer, x)
        for name, value in values.items():
            if name in ("q", "k"):
                per_head = value.abs().reshape(value.shape[0], heads, -1).amax(dim=(0, 2)).numpy()
                top[name] = np.maximum(top.get(name, 0), per_head)
            else:
                top[name] = max(top.get(name, 0.0), float(value.abs().max()))
    return top


def exponents(top):
    """The exponents of the module docstring from calibrated magnitudes."""
    e = {"in": exponent_for(top["in"], WIDE_BITS), "x0": exponent_for(top["in"], DATA_BITS),
         "v": exponent_for(top["v"], DATA_BITS),
         "r1": exponent_for(top["r1"], WIDE_BITS), "h1": exponent_for(top["h1"], WIDE_BITS),
         "x1": exponent_for(top["h1"], DATA_BITS), "pre": exponent_for(top["pre"], GELU_BITS),
         "g": exponent_for(top["g"], DATA_BITS), "r2": exponent_for(top["r2"], WIDE_BITS),
         "out": exponent_for(top["out"], WIDE_BITS)}
    e["q"] = tuple(exponent_for(m, DATA_BITS) for m in top["q"])
    e["k"] = tuple(exponent_for(m, DATA_BITS) for m in top["k"])
    return e


def from_float(layer, calibration_inputs, attention_config, groups=None):
    """The integer layer of a float `layer` (software.models.minilm._Layer), its exponents calibrated
    on `calibration_inputs` (n x H hidden states at the layer's input). `groups`: {"intermediate":
    grouping, "output": grouping} of the column-combined FFN matrices (None: dense)."""
    groups = groups or {}
    att = layer.attention
    hidden = att["self"]["query"].weight.shape[1]
    if hidden != layer.heads * attention_config.head_dim:
        raise ValueError(f"{layer.heads} heads of {attention_config.head_dim} do not make hidden {hidden}")
    e = exponents(calibrate(layer, calibration_inputs))
    modules = {"query": (att["self"]["query"], e["x0"]), "key": (att["self"]["key"], e["x0"]),
               "value": (att["self"]["value"], e["x0"]), "attention_output": (att["output"]["dense"], e["v"]),
               "intermediate": (layer.intermediate["dense"], e["x1"]), "output": (layer.output["dense"], e["g"])}
    linears = {name: IntLinear.from_float(name, effective_weight(m).numpy(), m.bias.detach().numpy(), in_exp,
                                          groups.get(name))
               for name, (m, in_exp) in modules.items()}
    norm = lambda ln, in_exp, out_exp: IntLayerNorm.from_float(ln.weight.detach().numpy(), ln.bias.detach().numpy(),
                                                               ln.eps, in_exp, out_exp)
    return EncoderLayerInt(
        linears=linears,
        attention=IntAttention.build(attention_config, layer.heads, e["q"], e["k"], e["v"]),
        ln1=norm(att["output"]["LayerNorm"], e["r1"], e["h1"]),
        ln2=norm(layer.output["LayerNorm"], e["r2"], e["out"]),
        gelu=GeluTable.build(e["pre"], e["g"]), exps=e)


@dataclasses.dataclass(frozen=True)
class Closeness:
    """The integer layer's output against a float one, over all n x H values."""
    max_abs: float
    mean_abs: float
    cosine: float          # of the flattened outputs
    min_token_cosine: float

    @classmethod
    def of(cls, got, want):
        got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
        diff = np.abs(got - want)
        cos = lambda a, b: float((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b)))
        return cls(max_abs=float(diff.max()), mean_abs=float(diff.mean()), cosine=cos(got.ravel(), want.ravel()),
                   min_token_cosine=min(cos(a, b) for a, b in zip(got, want)))
