"""Write a folder of PNGs, one subfolder per class, from a CIFAR-10 archive: data shaped as a user's.

    python export_pngs.py CIFAR_ARCHIVE OUT [--classes cat dog horse]

The archive is read with lrtune's own loader (its unpickler admits only
numpy arrays), then each image is saved with Pillow as OUT/<class>/<n>.png.
"""

import argparse
from pathlib import Path

from PIL import Image

from lrtune.data import load_cifar10


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("archive")
    p.add_argument("out")
    p.add_argument("--classes", nargs="+", default=["cat", "dog", "horse"])
    args = p.parse_args()
    data = load_cifar10(args.archive, classes=args.classes, validation="test")
    out = Path(args.out)
    written = dict.fromkeys(data.class_names, 0)
    for x, y in ((data.x_train, data.y_train), (data.x_val, data.y_val)):
        for image, label in zip(x, y, strict=True):
            name = data.class_names[label]
            (out / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(out / name / f"{written[name]:05d}.png")
            written[name] += 1
    print(f"{out}: " + ", ".join(f"{n} {name}" for name, n in written.items()) + " PNGs")


if __name__ == "__main__":
    main()
