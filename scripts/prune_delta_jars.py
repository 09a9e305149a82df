"""Remove from a jar folder every artifact that pyspark already bundles.

Usage: python scripts/prune_delta_jars.py JAR_DIR

Maven resolves Delta's transitive dependencies at the versions Delta was built against
(for example Jackson 2.13), while pyspark ships newer ones. Two versions of one artifact on
Spark's classpath fail at run time, so the copies that pyspark already provides are deleted
and pyspark's are used.
"""

import pathlib
import re
import sys

import pyspark

JAR_NAME = re.compile(r"^(?P<artifact>.+?)-(?P<version>\d[\w.\-]*)\.jar$")


def artifact_name(jar: pathlib.Path) -> str:
    match = JAR_NAME.match(jar.name)
    return match.group("artifact") if match else jar.stem


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    jar_dir = pathlib.Path(argv[0])
    bundled_dir = pathlib.Path(pyspark.__file__).parent / "jars"
    bundled = {artifact_name(jar) for jar in bundled_dir.glob("*.jar")}

    kept = []
    for jar in sorted(jar_dir.glob("*.jar")):
        if artifact_name(jar) in bundled:
            jar.unlink()
        else:
            kept.append(jar.name)
    print(f"prune_delta_jars: kept {len(kept)} jars: {', '.join(kept)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
