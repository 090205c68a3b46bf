"""Many independent small fits on Dask: a Gaussian peak fitted to the spectrum of every pixel.

A synthetic spectral image: 128 x 128 pixels, 40 channels at wavelengths 0..1; each pixel holds
A exp(-(l - mu)^2 / (2 s^2)) plus normal noise (deviation 0.05), with A, mu and s varying smoothly
over the image. The image is a dask array chunked 32 x 32 pixels (all channels in each chunk), and
`map_blocks` fits every chunk's 1024 pixels at once on a worker: one tape for one pixel's squared
error summed over the channels, replayed over the chunk's pixels (batch mode). The parameters A, mu
and s are array leaves, one value per pixel, so backprop() gives each pixel its own gradient, and
the pixels' fits never mix; a numpy Adam steps all of them together. Starts from the brightest
channel of each pixel. Runs in a LocalCluster of 2 worker processes (--quick: 48 x 48 pixels, 80
steps, threads in one process). Draws the true and fitted peak positions, their difference, and
three pixels' spectra with their fits (dask_many_fits.png).
"""
import time

import numpy as np

import _common
import rustograd_cy as rg

CHANNELS = 40
NOISE = 0.05
CHUNK = 32
LR = 0.01


def truth(shape, seed=3):
    """(A, mu, s), each an array of `shape` pixels: smooth patterns over the image."""
    h, w = shape
    i, j = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    mu = 0.5 + 0.22 * np.sin(2.5 * np.pi * i) * np.cos(1.5 * np.pi * j)
    amp = 0.6 + 0.5 * np.exp(-((i - 0.6) ** 2 + (j - 0.4) ** 2) / 0.1)
    width = 0.05 + 0.04 * j
    return amp, mu, width


def peak(lam, amp, mu, width):
    return amp[..., None] * np.exp(-((lam - mu[..., None]) ** 2) / (2 * width[..., None] ** 2))


def spectra(shape, seed=3):
    """The noisy spectral image (h, w, CHANNELS) and its wavelengths."""
    lam = np.linspace(0.0, 1.0, CHANNELS)
    rng = np.random.default_rng(seed)
    return peak(lam, *truth(shape)) + rng.normal(0.0, NOISE, shape + (CHANNELS,)), lam


def pixel_tape(lam):
    """One pixel's model on a tape: leaves A, mu, s and one y leaf per channel; the loss is the
    squared error summed over the channels."""
    tape = rg.Tape()
    amp, mu, width = tape.term("A", 1.0), tape.term("mu", 0.5), tape.term("s", 0.1)
    ys = [tape.term(f"y{c}", 0.0) for c in range(len(lam))]
    loss = 0.0
    for l, y in zip(lam, ys):
        d = (float(l) - mu) / width
        r = amp * (-0.5 * d * d).exp() - y
        loss = loss + r * r
    return tape, loss, [amp, mu, width], ys


def fit_block(block, lam, steps):
    """Fit every pixel of `block` (h, w, channels): returns (h, w, 3) fitted A, mu, s.

    The tape is replayed over the h * w pixels at once; the parameter leaves hold one value per
    pixel, so each pixel gets its own gradient and Adam step (numpy, elementwise)."""
    h, w, c = block.shape
    flat = np.ascontiguousarray(block.reshape(h * w, c))
    tape, loss, params, ys = pixel_tape(lam)
    for c_, y in enumerate(ys):
        y.set(flat[:, c_])
    best = flat.argmax(axis=1)
    theta = np.stack([flat[np.arange(h * w), best], lam[best], np.full(h * w, 0.08)])  # (3, pixels)
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    b1, b2, eps = 0.9, 0.999, 1e-8
    for t in range(1, steps + 1):
        for p, values in zip(params, theta):
            p.set(values)
        loss.eval()
        loss.backprop()
        g = np.stack([p.grad for p in params])  # per pixel: the pixels are independent
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        theta = theta - LR * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
        theta[2] = np.maximum(theta[2], 1e-3)  # a width stays positive
    return theta.T.reshape(h, w, 3)


def fit_image(cube, lam, steps):
    """map_blocks over the chunked image: each chunk's pixels fitted where the chunk is."""
    import dask.array as da

    image = da.from_array(cube, chunks=(CHUNK, CHUNK, -1))
    fitted = da.map_blocks(fit_block, image, lam, steps, dtype=float,
                           chunks=image.chunks[:2] + ((3,),))
    return fitted.compute()


def draw(cube, lam, fitted, path):
    plt = _common.pyplot()
    amp, mu, width = truth(cube.shape[:2])
    err = fitted[..., 1] - mu
    fig, axes = plt.subplots(2, 2, figsize=(10, 8.4))
    (a, b), (c, d) = axes
    for ax, img, title in ((a, mu, "true peak position mu"), (b, fitted[..., 1], "fitted mu")):
        im = ax.imshow(img, cmap="viridis", vmin=0.25, vmax=0.75)
        ax.set_title(title, fontsize=12)
        fig.colorbar(im, ax=ax, shrink=0.85)
    lim = max(np.abs(err).max(), 1e-6)
    im = c.imshow(err, cmap="RdBu_r", vmin=-lim, vmax=lim)
    c.set_title(f"fitted - true mu (RMS {np.sqrt(np.mean(err ** 2)):.4f})", fontsize=12)
    fig.colorbar(im, ax=c, shrink=0.85)
    for ax in (a, b, c):
        ax.set_xlabel("pixel column")
        ax.set_ylabel("pixel row")
    h, w = cube.shape[:2]
    grid = np.linspace(0, 1, 300)
    for (i, j), color in zip(((h // 4, w // 5), (h // 2, w // 2), (3 * h // 4, 4 * w // 5)),
                             ("tab:blue", "tab:orange", "tab:green")):
        A, m, s = fitted[i, j]
        d.plot(lam, cube[i, j], "o", ms=3, color=color, label=f"pixel ({i}, {j})")
        d.plot(grid, peak(grid, np.array(A), np.array(m), np.array(s)), color=color, lw=1.2)
        for ax in (a, b):
            ax.plot(j, i, "o", mfc="none", mec=color, ms=9, mew=2)
    d.set_title("three pixels: spectrum (dots) and fitted peak", fontsize=12)
    d.set_xlabel("wavelength")
    d.set_ylabel("intensity")
    d.legend(fontsize=9)
    fig.suptitle(f"{h * w} independent peak fits, one per pixel, mapped over a {CHUNK} x {CHUNK} "
                 f"chunked dask array", fontsize=13)
    fig.tight_layout()
    _common.save_figure(fig, path)


def main(argv=None):
    args = _common.options(__doc__.splitlines()[0], argv)
    shape, steps = ((48, 48), 80) if args.quick else ((128, 128), 300)
    cube, lam = spectra(shape)

    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=not args.quick,
                           memory_limit="2GiB", dashboard_address=":0", silence_logs=40)
    with cluster, Client(cluster):
        start = time.perf_counter()
        fitted = fit_image(cube, lam, steps)
        seconds = time.perf_counter() - start
    amp, mu, width = truth(shape)
    rms = [np.sqrt(np.mean((fitted[..., k] - t) ** 2)) for k, t in enumerate((amp, mu, width))]
    print(f"{shape[0] * shape[1]} pixel fits of {steps} Adam steps in {seconds:.2f} s; RMS error: "
          f"A {rms[0]:.4f}, mu {rms[1]:.4f}, s {rms[2]:.4f}")
    draw(cube, lam, fitted, args.out / "dask_many_fits.png")


if __name__ == "__main__":
    main()
