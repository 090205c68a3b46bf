"""Pictures of expression graphs: rendering DOT with Graphviz, and animated forward/backward passes.

Rendering runs the Graphviz `dot` program (Debian/Ubuntu: `apt-get install graphviz`); GIFs are
assembled with Pillow. Works for every term kind that has `_graph()`, `_key()` and sweep callbacks.

>>> import rustograd_cy as rg
>>> tape = rg.Tape()
>>> a, b, c = tape.term("a", 123.0), tape.term("b", 321.0), tape.term("c", 42.0)
>>> len(rg.viz.animation_frames((a + b) * c))  # start, 5 forward steps, 5 backward steps, end
12
"""
import os
import shutil
import subprocess
import tempfile

from rustograd_cy.dot import write_records

INSTALL_HINT = (
    "the Graphviz `dot` program is needed to render graphs: install it with "
    "`apt-get install graphviz` (Debian/Ubuntu), `brew install graphviz` (macOS) or from "
    "https://graphviz.org/download/"
)


def dot_program():
    """Path of the Graphviz `dot` program, or None when it is not installed."""
    return shutil.which("dot")


def render(dot_texts, paths, format="png", dpi=None):
    """Render DOT text(s) to image file(s) with one run of Graphviz `dot`.

    `dot_texts` and `paths` are a str each, or equally long lists. Raises FileNotFoundError when
    Graphviz is missing.
    """
    if isinstance(dot_texts, str):
        dot_texts, paths = [dot_texts], [paths]
    if len(dot_texts) != len(paths):
        raise ValueError(f"render() got {len(dot_texts)} DOT texts for {len(paths)} paths")
    program = dot_program()
    if program is None:
        raise FileNotFoundError(INSTALL_HINT)
    command = [program, f"-T{format}"]
    if dpi is not None:
        command.append(f"-Gdpi={dpi}")
    with tempfile.TemporaryDirectory(prefix="rustograd-dot-") as tmp:
        sources = []
        for i, text in enumerate(dot_texts):
            source = os.path.join(tmp, f"{i}.dot")
            with open(source, "w", encoding="utf-8") as f:
                f.write(text)
            sources.append(source)
        # -O writes <source>.<format> next to each source: one process for all the frames.
        subprocess.run(command + ["-O"] + sources, check=True, capture_output=True)
        for source, path in zip(sources, paths):
            shutil.move(f"{source}.{format}", os.fspath(path))


def _masked(records, values, grads):
    """Records with data shown only for leaves and keys in `values`, grad only for keys in `grads`."""
    return [
        (key, name, op, infix, operands,
         data if (not operands or key in values) else None,
         grad if key in grads else None)
        for key, name, op, infix, operands, data, grad in records
    ]


def animation_frames(term, **options):
    """DOT texts of the forward then backward pass of `term`, one per step.

    Frame 0 shows the leaves' values only; then one frame per node as eval() computes it (the node
    highlighted), then one per node as backprop() passes its gradient on (the node highlighted, a
    dashed edge to each operand that receives gradient from it), then the finished graph.
    Values and gradients shown are those of this pass, whatever was computed before.
    `options` go to `rustograd_cy.dot.dot` (not highlight/connect_to, which the frames set).
    """
    for taken in ("highlight", "connect_to"):
        if taken in options:
            raise TypeError(f"animation_frames() sets {taken} itself, frame by frame")
    operands_of = {record[0]: record[4] for record in term._graph()}
    computed, processed, received = set(), set(), set()
    frames = [write_records(_masked(term._graph(), computed, received), **options)]

    def forward_step(node):
        key = node._key()
        computed.add(key)
        frames.append(write_records(_masked(term._graph(), computed, received), highlight=key,
                                    **options))

    def backward_step(node):
        key = node._key()
        processed.add(key)
        received.add(key)
        received.update(operands_of[key])
        frames.append(write_records(_masked(term._graph(), computed, received), highlight=key,
                                    connect_to=list(dict.fromkeys(operands_of[key])), **options))

    term.eval(callback=forward_step)
    received.add(term._key())  # backprop seeds d(term)/d(term) = 1
    term.backprop(callback=backward_step)
    frames.append(write_records(_masked(term._graph(), computed, received), **options))
    return frames


def animate(term, path, *, duration=600, final_duration=2000, dpi=72, **options):
    """Write an animated GIF of the forward then backward pass of `term` to `path`.

    Each frame is rendered by Graphviz `dot` and the frames are put together with Pillow, on one
    canvas size; `duration` is milliseconds per frame, `final_duration` for the last one. `options`
    go to `rustograd_cy.dot.dot` (e.g. vertical=True, precision=3). Returns the number of frames.

    >>> rg.viz.animate(abc, "out/backprop.gif")  # doctest: +SKIP
    """
    from PIL import Image

    frames = animation_frames(term, **options)
    with tempfile.TemporaryDirectory(prefix="rustograd-frames-") as tmp:
        pngs = [os.path.join(tmp, f"frame{i:04d}.png") for i in range(len(frames))]
        render(frames, pngs, "png", dpi=dpi)
        images = []
        for png in pngs:
            with Image.open(png) as image:
                images.append(image.convert("RGB"))
    width = max(image.width for image in images)
    height = max(image.height for image in images)
    canvas = []
    for image in images:  # labels change width as values appear: centre each frame on one canvas
        frame = Image.new("RGB", (width, height), "white")
        frame.paste(image, ((width - image.width) // 2, (height - image.height) // 2))
        canvas.append(frame)
    save_gif(canvas, path, [duration] * (len(canvas) - 1) + [final_duration])
    return len(canvas)


def save_gif(images, path, durations, colors=32):
    """Save equally sized RGB Pillow images as a looping GIF with one shared palette.

    Drawings and plots use few colours: one palette of `colors` entries, taken from the first, middle
    and last frames, keeps them faithful, and lets the GIF store only what changes between frames.
    """
    from PIL import Image

    samples = [images[0], images[len(images) // 2], images[-1]]
    montage = Image.new("RGB", (images[0].width, images[0].height * len(samples)))
    for i, image in enumerate(samples):
        montage.paste(image, (0, i * image.height))
    palette = montage.quantize(colors=colors)
    frames = [image.quantize(palette=palette, dither=Image.Dither.NONE) for image in images]
    frames[0].save(os.fspath(path), save_all=True, append_images=frames[1:], duration=list(durations),
                   loop=0, optimize=True)
