"""`matchanything-ros bag repair BAG`: rebuild the summary / metadata of a bag that was not closed."""
from __future__ import annotations

HELP = "bag tools: repair a bag that was not closed (killed recorder, power loss)"


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="bag_command", metavar="ACTION", required=True)
    repair = sub.add_parser(
        "repair",
        help="rebuild metadata.yaml, the db3 metadata / MCAP summary of a bag in place",
        description="Make a bag that was not closed (killed replay or make-bag, power loss, copy cut short) whole: "
        "SQLite rolls back an unfinished commit, an MCAP file gets its summary rewritten by the mcap library, "
        "and every metadata copy is recounted. A whole bag is left untouched.",
    )
    repair.add_argument("bag", metavar="BAG", help="bag directory (metadata.yaml + one .mcap or .db3 file)")


def run(args) -> int:
    from ..bags.repair import repair
    from ..bags.storage import BagError
    from . import CommandError

    try:
        result = repair(args.bag)
    except (BagError, OSError) as exc:
        raise CommandError(" ".join(str(exc).split())) from None
    print(result.text())
    return 0
