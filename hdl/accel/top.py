"""The model accelerator: a packed model resident on the chip (DESIGN.md §10, spec/model.py).

    images --> loader --> activation memory (lanes x 2 halves) --> reader --> array.activations
                                   ^                                             |
                                   |  write, one lane per row                    v
                                   +-------------- post-processing <-- array.results
    weight memory --> reader --> array.weights                     |
                                                                   +--> logits buffer --> logits

Control (all from registers; no ready or valid reaches further than one buffer):
  * load: `images` is ready while a batch loads; each pixel goes through the loader table to its
    word and lane of the first layer's input (half 0). The batch's last pixel (`last`, or the
    batch's `batch`-th image) starts layer 0.
  * feed: for each row block, each group block, each image, the activation reader reads one word
    and offers it to the array with last / clear / emit. Layer L reads half L % 2.
  * post-process: each result beat, with its row block's table entry, becomes `rows` activations
    written into the other half (hidden layers) or `rows` logits into the logits buffer (the last
    layer). The write of a hidden layer's last result starts the next layer; the logits of the
    last layer's last result end the batch and open `images` again.
  * weights: the weight reader streams every tile's beats, layer after layer, batch after batch;
    the array takes them into whichever bank is free, so the next tile's weights load during
    this one's vectors (and the next batch's first tiles during this batch's last).
The results stream of the array is taken only while the logits buffer is sure to have room for
every beat in the post-processing pipeline (a credit), so the pipeline never stalls.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.memories import uninitialised_memory
from hdl.systolic import SystolicArray

from .postproc import PostProcessor
from .reader import MemoryReader

LOGITS_BUFFER = 8           # entries: more than the post-processing pipeline holds


class ModelAccelerator(wiring.Component):
    """The accelerator of one compiled program (software.packing.program.Program: anything with
    `config`, `weight_beats`, `table` and `loader`, the words of its memories).

    Members
    -------
    weights : In(stream.Signature(weight beat))   only with `weights_loaded`: the program's beats
    images : In(stream.Signature({pixel, last}))
    logits : Out(stream.Signature(rows logits))
    """

    def __init__(self, config, *, program, shared_prefix=None, dsp_cells=0):
        if program.config != config:
            raise ValueError("the program was compiled for another configuration")
        self.config, self.program = config, program
        self.array = SystolicArray(config.array, shared_prefix=shared_prefix, dsp_cells=dsp_cells)
        self.shared_modules = self.array.shared_modules
        self.image_layout = data.StructLayout({"pixel": config.act_width, "last": 1})
        super().__init__({
            **({"weights": In(stream.Signature(config.array.weight_beat_width))} if config.weights_loaded else {}),
            "images": In(stream.Signature(self.image_layout)),
            "logits": Out(stream.Signature(data.ArrayLayout(data.signed(config.logit_width), config.rows))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, prog = self.config, self.program
        R, lanes, layers = cfg.rows, cfg.lanes, len(cfg.layers)
        m.submodules.array = array = self.array
        addr_shape = range(cfg.act_depth)
        last_layer = layers - 1

        # ---------------------------------------------------------------------------------
        # Weights: every tile's beats, in order, round and round.
        beats = len(prog.weight_beats)
        m.submodules.weight_reader = weight_reader = MemoryReader(
            len(Signal(range(max(beats, 2)))), cfg.array.weight_beat_width, 1)
        weights_held = self._weight_memory(m, weight_reader, beats)
        weight_addr = Signal(range(max(beats, 2)))
        m.d.comb += [
            weight_reader.addresses.valid.eq(weights_held),
            weight_reader.addresses.payload.addr.eq(weight_addr),
            array.weights.valid.eq(weight_reader.data.valid),
            array.weights.payload.eq(weight_reader.data.payload.data),
            weight_reader.data.ready.eq(array.weights.ready),
        ]
        with m.If(weight_reader.addresses.valid & weight_reader.addresses.ready):
            m.d.sync += weight_addr.eq(_wrap_increment(weight_addr, beats))

        # ---------------------------------------------------------------------------------
        # The activation memory: one memory per lane, so that a result beat writes its rows'
        # activations into different words in one clock. Row r of a result writes only lanes
        # r, r + R, r + 2R, ... (its lane class picks one), so those lanes share one memory, a
        # lane per byte-enabled slice: R memories, each written once per clock at its own address.
        m.submodules.act_reader = act_reader = MemoryReader(
            len(Signal(addr_shape)), lanes * cfg.act_width, data.StructLayout({"last": 1, "clear": 1, "emit": 1}))
        per_class = cfg.lanes_per_class
        class_writes, class_data = [], []
        for r in range(min(R, lanes)):
            lane_memory = memory.Memory(shape=unsigned(per_class * cfg.act_width), depth=cfg.act_depth, init=[])
            m.submodules[f"lanes_{r}"] = lane_memory
            read, write = lane_memory.read_port(), lane_memory.write_port(granularity=cfg.act_width)
            m.d.comb += [read.addr.eq(act_reader.mem_addr), read.en.eq(act_reader.mem_en)]
            class_data.append(read.data)
            class_writes.append(write)
        m.d.comb += act_reader.mem_data.eq(Cat(
            class_data[j % R].word_select(j // R, cfg.act_width) for j in range(lanes)))

        # ---------------------------------------------------------------------------------
        # Load: pixels into the first layer's input words (half 0).
        loading = Signal(init=1)
        load_start = Signal()                 # one clock after the batch's last pixel
        last_image = Signal(range(max(cfg.batch, 2)))   # the batch's images less one
        pixel_index = Signal(range(max(cfg.in_features, 2)))
        image = Signal(range(max(cfg.batch, 2)))
        image_base = Signal(addr_shape)
        in_words = cfg.group_blocks(0)
        loader_layout = data.StructLayout({name: width for name, width in cfg.loader_fields})
        m.submodules.loader_table = loader_table = memory.Memory(
            shape=unsigned(loader_layout.size), depth=max(cfg.in_features, 2), init=prog.loader)
        loader_port = loader_table.read_port()
        loader_entry = loader_layout(loader_port.data)
        pixel_taken = Signal()
        m.d.comb += [
            self.images.ready.eq(loading),
            pixel_taken.eq(self.images.valid & self.images.ready),
            loader_port.addr.eq(pixel_index), loader_port.en.eq(1),
        ]
        m.d.sync += load_start.eq(0)
        with m.If(pixel_taken):
            with m.If(pixel_index == cfg.in_features - 1):
                m.d.sync += pixel_index.eq(0)
                with m.If(self.images.payload.last | (image == cfg.batch - 1)):
                    m.d.sync += [last_image.eq(image), loading.eq(0), load_start.eq(1),
                                 image.eq(0), image_base.eq(0)]
                with m.Else():
                    m.d.sync += [image.eq(image + 1), image_base.eq(image_base + in_words)]
            with m.Else():
                m.d.sync += pixel_index.eq(pixel_index + 1)
        # The write, a clock later, when the table entry has been read.
        load_write = Signal()
        load_pixel = Signal(cfg.act_width, reset_less=True)
        load_base = Signal(addr_shape, reset_less=True)
        m.d.sync += [load_write.eq(pixel_taken), load_pixel.eq(self.images.payload.pixel), load_base.eq(image_base)]

        # ---------------------------------------------------------------------------------
        # Feed: layer `layer`'s input vectors, tile by tile, to the array.
        feeding = Signal()
        layer = Signal(range(max(layers, 2)))
        row_block = Signal(range(max(2, *(cfg.row_blocks(i) for i in range(layers)))))
        group_block = Signal(range(max(2, *(cfg.group_blocks(i) for i in range(layers)))))
        vector = Signal(range(max(cfg.batch, 2)))
        feed_address = Signal(addr_shape)     # the word of (vector, group_block), kept in step with them
        feed_groups = Signal(range(max(cfg.group_blocks(i) for i in range(layers)) + 1))
        feed_blocks = Signal(range(max(cfg.row_blocks(i) for i in range(layers)) + 1))
        feed_region = Signal(addr_shape)
        with m.Switch(layer):
            for i in range(layers):
                with m.Case(i):
                    m.d.comb += [feed_groups.eq(cfg.group_blocks(i)), feed_blocks.eq(cfg.row_blocks(i)),
                                 feed_region.eq((i % 2) * cfg.region_words)]

        # Whether `vector` is the batch's last image: a register, as comparing the counter with the
        # batch size in the counters' enables was the iCEBreaker 4x2's critical path (25 ns).
        vector_last = Signal()
        tag = act_reader.addresses.payload.tag
        m.d.comb += [
            act_reader.addresses.valid.eq(feeding),
            act_reader.addresses.payload.addr.eq(feed_address),
            tag.last.eq(vector_last),
            tag.clear.eq(group_block == 0),
            tag.emit.eq(group_block == feed_groups - 1),
        ]
        with m.If(act_reader.addresses.valid & act_reader.addresses.ready):
            # The address is a register updated with the counters, not their sum: the activation
            # memory's read address comes straight from a flip-flop (the ULX3S 8x8's critical path
            # was the counters' adder into the memory, 11.4 ns).
            with m.If(vector_last):
                m.d.sync += [vector.eq(0), vector_last.eq(last_image == 0)]
                with m.If(group_block == feed_groups - 1):
                    m.d.sync += [group_block.eq(0), feed_address.eq(feed_region)]
                    with m.If(row_block == feed_blocks - 1):
                        m.d.sync += [row_block.eq(0), feeding.eq(0)]
                    with m.Else():
                        m.d.sync += row_block.eq(row_block + 1)
                with m.Else():
                    m.d.sync += [group_block.eq(group_block + 1), feed_address.eq(feed_region + group_block + 1)]
            with m.Else():
                m.d.sync += [vector.eq(vector + 1), vector_last.eq(vector + 1 == last_image),
                             feed_address.eq(feed_address + feed_groups)]
        response = act_reader.data.payload
        m.d.comb += [
            array.activations.valid.eq(act_reader.data.valid),
            array.activations.payload.data.as_value().eq(response.data),
            array.activations.payload.last.eq(response.tag.last),
            array.activations.payload.clear.eq(response.tag.clear),
            array.activations.payload.emit.eq(response.tag.emit),
            act_reader.data.ready.eq(array.activations.ready),
        ]

        # ---------------------------------------------------------------------------------
        # Post-process: result beats, row block by row block, image by image.
        context = data.StructLayout({"logits": 1, "layer_end": 1})
        m.submodules.postproc = post = PostProcessor(cfg, prog.table, context, addr_width=len(Signal(addr_shape)))
        m.submodules.logits_buffer = logits_buffer = fifo.SyncFIFOBuffered(
            width=R * cfg.logit_width, depth=LOGITS_BUFFER)
        post_layer = Signal(range(max(layers, 2)))
        post_block = Signal(range(max(2, *(cfg.row_blocks(i) for i in range(layers)))))
        post_image = Signal(range(max(cfg.batch, 2)))
        post_offset = Signal(addr_shape)          # post_image * the next layer's words
        # Entries of the logits buffer promised to beats taken from the array: those in the
        # post-processing and those in the buffer. One counter, so the array's results ready is
        # one comparison of a register (the iCEBreaker's and the ULX3S 8x8's critical path was
        # the sum of the in-flight count and the buffer's level into the array's result FIFO).
        logits_reserved = Signal(range(LOGITS_BUFFER + 1))
        post_blocks = Signal(range(max(cfg.row_blocks(i) for i in range(layers)) + 1))
        next_words = Signal(range(max(cfg.group_blocks(i) for i in range(layers)) + 1))
        out_region = Signal(addr_shape)
        table_base = Signal(range(max(cfg.table_entries, 2)))
        is_logits = Signal()
        base = 0
        with m.Switch(post_layer):
            for i in range(layers):
                with m.Case(i):
                    m.d.comb += [post_blocks.eq(cfg.row_blocks(i)), table_base.eq(base),
                                 is_logits.eq(i == last_layer),
                                 next_words.eq(cfg.group_blocks(i + 1) if i < last_layer else 0),
                                 out_region.eq(((i + 1) % 2) * cfg.region_words)]
                base += cfg.row_blocks(i)
        result_taken = Signal()
        layer_end = Signal()
        post_image_last = Signal()              # post_image == last_image, a register as vector_last is
        m.d.comb += [
            array.results.ready.eq(logits_reserved < LOGITS_BUFFER),
            result_taken.eq(array.results.valid & array.results.ready),
            layer_end.eq((post_block == post_blocks - 1) & post_image_last),
            post.valid.eq(result_taken),
            post.sums.eq(array.results.payload),
            post.entry_index.eq(table_base + post_block),
            post.context.logits.eq(is_logits),
            post.context.layer_end.eq(layer_end),
            post.dest.eq(out_region + post_offset),
        ]
        with m.If(load_start):
            m.d.sync += post_image_last.eq(last_image == 0)
        with m.If(result_taken):
            with m.If(post_image_last):
                m.d.sync += [post_image.eq(0), post_offset.eq(0), post_image_last.eq(last_image == 0)]
                with m.If(post_block == post_blocks - 1):
                    m.d.sync += [post_block.eq(0), post_layer.eq(_wrap_increment(post_layer, layers))]
                with m.Else():
                    m.d.sync += post_block.eq(post_block + 1)
            with m.Else():
                m.d.sync += [post_image.eq(post_image + 1), post_image_last.eq(post_image + 1 == last_image),
                             post_offset.eq(post_offset + next_words)]

        # The post-processed beat: activations into the lanes (or the loader's pixel while loading),
        # logits into the buffer.
        done = post.o_valid & post.o_context.layer_end
        for r, write in enumerate(class_writes):
            with m.If(load_write):
                for c in range(per_class):
                    m.d.comb += write.en[c].eq(loader_entry.valid & (loader_entry.lane == c * R + r))
                m.d.comb += [write.addr.eq(load_base + loader_entry.word), write.data.eq(load_pixel.replicate(per_class))]
            with m.Else():
                for c in range(per_class):
                    m.d.comb += write.en[c].eq(post.o_valid & post.o_write[r] & (post.o_lane_class[r] == c))
                m.d.comb += [write.addr.eq(post.o_addr[r]),
                             write.data.eq(post.o_values[r][:cfg.act_width].replicate(per_class))]
        logits_pushed = Signal()
        m.d.comb += [
            logits_pushed.eq(post.o_valid & post.o_context.logits),
            logits_buffer.w_en.eq(logits_pushed),
            logits_buffer.w_data.eq(post.o_values.as_value()),
            self.logits.valid.eq(logits_buffer.r_rdy),
            self.logits.payload.as_value().eq(logits_buffer.r_data),
            logits_buffer.r_en.eq(self.logits.ready),
        ]
        logits_sent = Signal()
        m.d.comb += logits_sent.eq(self.logits.valid & self.logits.ready)
        m.d.sync += logits_reserved.eq(logits_reserved + (result_taken & is_logits) - logits_sent)

        # ---------------------------------------------------------------------------------
        # Sequencing: a loaded batch starts layer 0; a hidden layer's last write starts the next;
        # the last layer's last logits end the batch.
        start_next = Signal()
        m.d.comb += start_next.eq(done & ~post.o_context.logits)
        with m.If(load_start | start_next):
            m.d.sync += [feeding.eq(1), row_block.eq(0), group_block.eq(0), vector.eq(0),
                         vector_last.eq(last_image == 0),
                         layer.eq(0 if layers == 1 else _first_or_next(load_start, layer)),
                         feed_address.eq(_region_of_start(cfg, load_start, layer))]
        with m.If(done & post.o_context.logits):
            m.d.sync += loading.eq(1)
        return m

    def _weight_memory(self, m, reader, beats):
        """The weight memory, read by `reader`; returns what says it holds the program's weights.

        Initialised by the bitstream, it always does. Loaded (`weights_loaded`), it is written a
        beat per handshake on `weights`, address 0 first, and read only once all `beats` are in:
        one address for both, as a single-port RAM (the iCE40UP5K's SPRAM) has, and no initial
        contents (the board build lets Yosys put it into SPRAM, hdl/memories.py)."""
        cfg, prog = self.config, self.program
        depth = max(beats, 2)
        if not cfg.weights_loaded:
            m.submodules.weight_memory = weight_memory = memory.Memory(
                shape=unsigned(cfg.array.weight_beat_width), depth=depth, init=prog.weight_beats)
            port = weight_memory.read_port()
            m.d.comb += [port.addr.eq(reader.mem_addr), port.en.eq(reader.mem_en), reader.mem_data.eq(port.data)]
            return 1
        m.submodules.weight_memory = weight_memory = uninitialised_memory(
            shape=unsigned(cfg.array.weight_beat_width), depth=depth)
        read, write = weight_memory.read_port(), weight_memory.write_port()
        held = Signal()                       # every beat written: reads may start
        write_addr = Signal(range(depth))
        address = Signal(range(depth))
        m.d.comb += [
            self.weights.ready.eq(~held),
            write.en.eq(self.weights.valid & self.weights.ready),
            write.data.eq(self.weights.payload),
            address.eq(Mux(held, reader.mem_addr, write_addr)),
            write.addr.eq(address), read.addr.eq(address),
            read.en.eq(reader.mem_en & ~write.en),
            reader.mem_data.eq(read.data),
        ]
        with m.If(write.en):
            m.d.sync += write_addr.eq(write_addr + 1)
            with m.If(write_addr == beats - 1):
                m.d.sync += held.eq(1)
        return held


def _wrap_increment(counter, count):
    """counter + 1, back to 0 after count - 1."""
    return Mux(counter == count - 1, 0, counter + 1)


def _first_or_next(load_start, layer):
    return Mux(load_start, 0, layer + 1)


def _region_of_start(cfg, load_start, layer):
    """The half the starting layer reads: 0 for layer 0 (after a load), else the one layer + 1 reads."""
    return Mux(load_start, 0, Mux(layer[0], 0, cfg.region_words))
