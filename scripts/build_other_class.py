"""Build the two image folders of docs/insight.md's "other" class measurement, as symlinks.

    python scripts/build_other_class.py FRUITS_360 FRUITS_360_103 OUT

OUT/three: train/ and test/ of Carambula, Lychee and Pear from FRUITS_360 (the embedded set's
photos). OUT/four: the same plus other/, real photos of other fruits: the classes of
FRUITS_360_103 that are none of the three (no pear variety either) are shuffled (seed 0) and
halved; 10 training and 5 test photos of each class of the first half make other/. The test
photos of the second half, fruits that neither model sees, are listed in OUT/unseen.txt.
"""
import os
import random
import sys

FRUITS = ["Carambula", "Lychee", "Pear"]
PER_CLASS = {"train": 10, "test": 5}


def link(source, target):
    os.makedirs(os.path.dirname(target), exist_ok=True)
    os.symlink(os.path.abspath(source), target)


def main(raw, sample, out):
    classes = sorted(c for c in os.listdir(os.path.join(sample, "train"))
                     if not any(fruit.lower() in c.lower() for fruit in FRUITS))
    rng = random.Random(0)
    rng.shuffle(classes)
    other, unseen = sorted(classes[:len(classes) // 2]), sorted(classes[len(classes) // 2:])
    for name in ("three", "four"):
        for part in ("train", "test"):
            for fruit in FRUITS:
                for f in sorted(os.listdir(os.path.join(raw, part, fruit))):
                    link(os.path.join(raw, part, fruit, f), os.path.join(out, name, part, fruit, f))
    for part, count in PER_CLASS.items():
        for c in other:
            for f in rng.sample(sorted(os.listdir(os.path.join(sample, part, c))), count):
                link(os.path.join(sample, part, c, f), os.path.join(out, "four", part, "other", f"{c.replace(' ', '_')}__{f}"))
    with open(os.path.join(out, "unseen.txt"), "w") as listing:
        for c in unseen:
            for f in sorted(os.listdir(os.path.join(sample, "test", c))):
                listing.write(os.path.join(os.path.abspath(sample), "test", c, f) + "\n")
    print(f"other: {len(other)} classes; unseen: {len(unseen)} classes ({', '.join(unseen)})")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
