"""Integer, bit-exact golden models of every hardware unit and their cycle models, written from
DESIGN.md and spec/, never from hdl/."""
