"""Progress bars on stderr for long work; silent when stderr is not a terminal (CI logs, pipes)."""

from contextlib import contextmanager


@contextmanager
def progress_bar(desc: str, total: int | None = None, unit: str = "it"):
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, disable=None, leave=False)
    try:
        yield bar
    finally:
        bar.close()
