"""Benchmark: decoding and memory with images larger than CIFAR-10 (issue 14).

    python benchmarks/large_images.py make /tmp/large --count 60000      # CIFAR-10 JPEGs upscaled to 512x384
    python benchmarks/large_images.py decode /tmp/large --count 6000 --size 128
    python benchmarks/large_images.py memory /tmp/large --counts 10000 30000 60000 --size 128

`make` upscales the CIFAR-10 JPEG copy (../shared/data/cifar10-jpeg.tar.gz) to 512x384 JPEGs (quality 90) in an
image-folder tree, 5 of every 6 images in train/ and 1 in test/. `decode` times `data.load_dataset` into an
empty cache on the first COUNT images, with and without JPEG draft decoding, on 1 and 2 threads. `memory`
decodes and then trains `airbench_small` for one epoch on subsets of COUNT images (folders of links), each in
its own process, sampling the process's memory every 0.1 s: RssAnon (its own memory) and VmRSS (which also
counts the pages of the memory-mapped cache it has touched; the kernel drops those first when memory runs low).
Each prints a Markdown table for BENCHMARKS.md.
"""

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
CIFAR_JPEG = REPOSITORY.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
LARGE_SIZE = (512, 384)  # width, height


def make(out: Path, count: int) -> None:
    import concurrent.futures
    import io

    from PIL import Image

    def upscale(item):
        index, name, content = item
        split = "test" if index % 6 == 5 else "train"
        target = out / split / name / f"{index:05d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.open(io.BytesIO(content)).convert("RGB").resize(LARGE_SIZE, Image.Resampling.BICUBIC).save(
            target, quality=90)

    items = []
    with tarfile.open(CIFAR_JPEG, "r:gz") as archive:
        for member in archive:
            parts = Path(member.name).parts
            if member.isfile() and len(parts) == 4 and len(items) < count:
                items.append((len(items), parts[2], archive.extractfile(member).read()))
    items.sort(key=lambda item: (hash(item[2]) % 997, item[0]))  # mix the classes, deterministically per file
    items = [(index, name, content) for index, (_, name, content) in enumerate(items)]
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(upscale, items))
    print(f"wrote {len(items)} images of {LARGE_SIZE[0]}x{LARGE_SIZE[1]} under {out}")


def subset(folder: Path, count: int, scratch: Path) -> Path:
    """A tree of links to the first `count` images of `folder` (train and test alike, in index order)."""
    target = scratch / f"subset-{count}"
    files = sorted(folder.rglob("*.jpg"), key=lambda path: path.name)[:count]
    for file in files:
        link = target / file.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(file)
    return target


class MemorySampler:
    """Peak RssAnon and VmRSS of this process, sampled every 0.1 s on a thread."""

    def __init__(self):
        self.peak = {"RssAnon": 0, "VmRSS": 0}
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self):
        while self.running:
            for line in Path("/proc/self/status").read_text().splitlines():
                key = line.split(":")[0]
                if key in self.peak:
                    self.peak[key] = max(self.peak[key], int(line.split()[1]) * 1024)
            time.sleep(0.1)

    def reset(self) -> dict:
        peak, self.peak = self.peak, {"RssAnon": 0, "VmRSS": 0}
        return peak


def child_decode(folder: str, size: int, threads: int, draft: bool) -> dict:
    from PIL import JpegImagePlugin

    from imagerec import data
    from imagerec.data import cache

    cache.DECODE_WORKERS = threads
    if not draft:  # full-size decoding, then resizing (JPEG files have their own draft)
        JpegImagePlugin.JpegImageFile.draft = lambda self, mode, size: None
    with tempfile.TemporaryDirectory() as cache:
        started = time.perf_counter()
        dataset = data.load_dataset(folder, image_size=size, cache_dir=cache, progress=False)
        seconds = time.perf_counter() - started
    count = len(dataset.y_train) + len(dataset.y_test)
    return {"threads": threads, "draft": draft, "images": count, "seconds": round(seconds, 1),
            "images_per_s": round(count / seconds, 1)}


def child_memory(folder: str, size: int, epochs: int) -> dict:
    sampler = MemorySampler()
    from imagerec import data
    from imagerec.training import recipes, run

    with tempfile.TemporaryDirectory() as scratch:
        baseline = sampler.reset()
        started = time.perf_counter()
        dataset = data.load_dataset(folder, image_size=size, cache_dir=Path(scratch) / "cache", progress=False)
        decode_s, decoding = time.perf_counter() - started, sampler.reset()
        recipe = recipes.get_recipe("airbench_small", epochs=epochs)
        started = time.perf_counter()
        result = run.train(dataset, recipe, Path(scratch) / "run", report=False, verbose=0)
        train_s, training = time.perf_counter() - started, sampler.reset()
    return {"images": len(dataset.y_train) + len(dataset.y_test), "train_images": len(dataset.y_train),
            "decoded_gb": round((dataset.x_train.nbytes + dataset.x_test.nbytes) / 1e9, 2),
            "baseline": baseline, "decoding": decoding, "training": training, "decode_s": round(decode_s, 1),
            "train_s": round(train_s, 1), "test_accuracy": round(result.metrics["test_accuracy"], 4)}


def in_child(*arguments) -> dict:
    output = subprocess.run([sys.executable, __file__, "child", *map(str, arguments)], capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    if output.returncode != 0:
        raise SystemExit(output.stderr[-3000:])
    return json.loads(output.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    made = commands.add_parser("make")
    made.add_argument("out", type=Path)
    made.add_argument("--count", type=int, default=60000)
    decode = commands.add_parser("decode")
    decode.add_argument("folder", type=Path)
    decode.add_argument("--count", type=int, default=6000)
    decode.add_argument("--size", type=int, default=128)
    memory = commands.add_parser("memory")
    memory.add_argument("folder", type=Path)
    memory.add_argument("--counts", type=int, nargs="+", default=[10000, 30000, 60000])
    memory.add_argument("--size", type=int, default=128)
    memory.add_argument("--epochs", type=int, default=1)
    child = commands.add_parser("child")
    child.add_argument("rest", nargs="+")
    arguments = parser.parse_args()
    if arguments.command == "make":
        make(arguments.out, arguments.count)
    elif arguments.command == "child":
        kind, folder, *rest = arguments.rest
        result = child_decode(folder, int(rest[0]), int(rest[1]), rest[2] == "on") if kind == "decode" else \
            child_memory(folder, int(rest[0]), int(rest[1]))
        print(json.dumps(result), flush=True)
    elif arguments.command == "decode":
        with tempfile.TemporaryDirectory() as scratch:
            folder = subset(arguments.folder, arguments.count, Path(scratch))
            in_child("decode", folder, arguments.size, 2, "on")  # a warm-up: the files into the page cache
            print(f"Decoding {arguments.count} JPEGs of 512x384 into {arguments.size}x{arguments.size}:\n")
            print("| threads | draft | images | seconds | images/s |\n|---|---|---|---|---|")
            for threads in (1, 2):
                for draft in ("on", "off"):
                    row = in_child("decode", folder, arguments.size, threads, draft)
                    print(f"| {threads} | {draft} | {row['images']} | {row['seconds']} | {row['images_per_s']} |",
                          flush=True)
    else:
        with tempfile.TemporaryDirectory() as scratch:
            print(f"Peak memory at {arguments.size}x{arguments.size} (GB; RssAnon / VmRSS):\n")
            print("| images | decoded | decoding | training (airbench_small, 1 epoch) | decode s | train s |"
                  " test acc |\n|---|---|---|---|---|---|---|")
            for count in arguments.counts:
                row = in_child("memory", subset(arguments.folder, count, Path(scratch)), arguments.size,
                               arguments.epochs)

                def gb(peak):
                    return f"{peak['RssAnon'] / 1e9:.2f} / {peak['VmRSS'] / 1e9:.2f}"

                print(f"| {row['images']} | {row['decoded_gb']} GB | {gb(row['decoding'])} | {gb(row['training'])} | "
                      f"{row['decode_s']} | {row['train_s']} | {row['test_accuracy']} |", flush=True)


if __name__ == "__main__":
    main()
