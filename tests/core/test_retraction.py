"""The whole-source guards on their own: when a removal is refused, who may take a flower over."""

import pandas as pd
import pytest

from iris_assets.core.retraction import (
    RetractionRefused,
    held_elsewhere,
    planned_removal,
    refuse_unless_deliberate,
)
from iris_assets.core.source import BUNDLED_SOURCE


def held(sources: dict[int, str]) -> pd.DataFrame:
    return pd.DataFrame({"flower_id": list(sources), "source": list(sources.values())})


def offered(ids) -> pd.DataFrame:
    return pd.DataFrame({"flower_id": list(ids)})


@pytest.mark.parametrize(
    ("holds", "offers", "refused"),
    [
        (10, 0, True),  # emptied: refused however few it held
        (1, 0, True),
        (10, 4, True),  # 6 of 10 gone: more than half and more than 5
        (6, 1, False),  # 5 of 6 gone: more than half but only 5 rows
        (20, 11, False),  # 9 of 20 gone: not more than half
        (20, 20, False),
    ],
)
def test_a_removal_is_refused_when_it_empties_the_source_or_takes_most_of_it(
    holds, offers, refused
):
    removal = planned_removal(
        held(dict.fromkeys(range(holds), "a.csv")), offered(range(offers)), "a.csv"
    )
    assert removal.removed == holds - offers
    if refused:
        with pytest.raises(RetractionRefused, match="retract_missing: true"):
            refuse_unless_deliberate(removal, rejected=0, deliberate=False)
    else:
        refuse_unless_deliberate(removal, rejected=0, deliberate=False)
    refuse_unless_deliberate(removal, rejected=0, deliberate=True)  # asked for: never refused


def test_only_the_source_own_rows_count():
    table = held({1: "a.csv", 2: "a.csv", 3: BUNDLED_SOURCE})
    removal = planned_removal(table, offered([]), "b.csv")
    assert (removal.held, removal.removed) == (0, 0)
    refuse_unless_deliberate(removal, rejected=0, deliberate=False)


def test_a_flower_moves_only_from_a_file_that_is_gone(tmp_path):
    present = tmp_path / "present.csv"
    present.write_text("flower_id\n")
    table = held({1: BUNDLED_SOURCE, 2: str(present), 3: str(tmp_path / "renamed.csv"), 4: "b.csv"})
    stays = held_elsewhere(table, offered([1, 2, 3, 4, 5]), "b.csv")
    assert stays.tolist() == [True, True, False, False, False]
