"""``w3gate crust check``: whether a Crust chain is usable by this release, before an account is funded.

It connects as the service does (:class:`~w3gate.crust.client.CrustClient`, read-only), so the verdict is the
service's own: the runtime's spec version and metadata, whether this release ships verified types for it,
a sample of live file records decoded strictly (as the poller decodes them), the order price at the market's
stored fees (as the submitter prices a batch), and the ordering account's balance if a secret is configured.
Nothing is signed or sent: the check spends nothing.
"""

from __future__ import annotations

from typing import Any

from w3gate.crust.client import MB, ChainUnavailable, CrustClient
from w3gate.crust.settings import CRU, CrustSettings
from w3gate.crust.typedefs import UnsupportedRuntime, checked_range, ranges
from w3gate.redact import redact_text, redact_url

SAMPLE = 20  # file records read and decoded per map
PRICE_SIZES = {"1 MiB": MB, "100 MiB": 100 * MB, "1 GiB": 1024 * MB}

# exit statuses (docs/crust.md)
USABLE = 0
UNREACHABLE = 3
UNSUPPORTED = 4
UNDECODABLE = 5


def run_check(settings: CrustSettings, sample: int = SAMPLE) -> dict[str, Any]:
    """The check's findings as JSON-safe data; ``exit_status`` says the verdict (0: usable)."""
    report: dict[str, Any] = {"url": redact_url(settings.url), "usable": False, "problems": [], "notes": []}
    client = CrustClient(settings, read_only=True)
    try:
        try:
            client.connect()
        except UnsupportedRuntime as exc:  # what the connection read before refusing is still said
            _runtime(report, client, settings)
            return _verdict(report, UNSUPPORTED, str(exc))
        _runtime(report, client, settings)
        report["spec_name"] = client.runtime_version().get("specName")
        report["ordering"] = {"call": f"Market.{client.order_call}", "arguments": client.order_arity,
                              "files_map": f"Market.{client.files_map}", "max_file_size": client.max_file_size,
                              "file_duration_blocks": client.file_duration, "renewal": client.renewal}
        if client.market_switch is not None:
            report["market_enabled"] = client.market_enabled()
            if not report["market_enabled"]:
                report["notes"].append(f"the market is switched off (Market.{client.market_switch}): ordering "
                                       "pauses until it is on")
        report["records"] = _records(client, sample)
        report["prices"] = _prices(client, settings)
        if client.keypair is not None:
            state = client.account()
            report["account"] = {"address": client.address, "nonce": state.nonce, "free": str(state.free),
                                 "usable": str(state.usable)}
            if state.free < settings.min_balance:
                report["notes"].append(f"the account's free balance is below crust.min_balance ({settings.min_balance}"
                                       "): ordering pauses until it is funded")
        else:
            report["account"] = None
            report["notes"].append("no ordering account secret configured (W3GATE_CRUST_SEED or crust.seed_file): "
                                   "balance not shown")
        failed = [r for m in report["records"] for r in m["sample"] if "error" in r]
        if failed:
            return _verdict(report, UNDECODABLE, f"{len(failed)} sampled file record(s) do not decode: "
                                                 f"{failed[0]['error']}")
        if not any(m["sample"] for m in report["records"]):
            report["notes"].append("no file records on chain to decode yet")
        return _verdict(report, USABLE, None)
    except ChainUnavailable as exc:
        return _verdict(report, UNREACHABLE, redact_text(str(exc), settings.url))
    except UnsupportedRuntime as exc:
        return _verdict(report, UNSUPPORTED, str(exc))
    finally:
        client.close()


def _verdict(report: dict[str, Any], status: int, problem: str | None) -> dict[str, Any]:
    if problem:
        report["problems"].append(problem)
    report["usable"] = status == USABLE
    report["exit_status"] = status
    return report


def _runtime(report: dict[str, Any], client: CrustClient, settings: CrustSettings) -> None:
    """Chain, spec version, metadata and what this release knows of its types (set before a refusal too)."""
    if client.spec_version is None:
        return
    report.update(chain=client.chain, spec_version=client.spec_version, metadata=client.metadata_version)
    shipped = [f"{e['spec_min']}..{e['spec_max']}" if e["spec_min"] != e["spec_max"] else str(e["spec_min"])
               for e in ranges(client.chain)]
    entry = checked_range(client.spec_version, client.chain)
    types: dict[str, Any] = {"verified_specs": shipped}
    if client.scale_info:
        types.update(source="metadata", verified=True)
    elif entry is not None:
        types.update(source="shipped", verified=True, range=shipped[ranges(client.chain).index(entry)],
                     maps=entry["maps"])
    elif settings.typedefs is not None:
        types.update(source="crust.typedefs", verified=False)
        report["notes"].append(f"types for spec {client.spec_version} come from your crust.typedefs file, not "
                               "verified by this release")
    else:
        types.update(source=None, verified=False)
    report["types"] = types


def _records(client: CrustClient, sample: int) -> list[dict[str, Any]]:
    """The first ``sample`` records of each file map, decoded strictly (bytes left over fail)."""
    out = []
    for name, value_type in client.file_maps.items():
        keys = client.sample_keys(name, sample)
        rows = []
        for key, value in client.raw_values(keys).items():
            if value is None:  # removed between the two reads
                continue
            row: dict[str, Any] = {"cid": client.cid_of_key(key, name), "key": key}
            try:
                rec = client.decode_record(value, name)
            except UnsupportedRuntime as exc:
                row["error"] = str(exc)
            else:
                row.update(file_size=rec.file_size, expires_at=rec.expires_at, replicas=rec.replicas)
            rows.append(row)
        out.append({"map": f"Market.{name}", "type": value_type, "sample": rows})
    return out


def _prices(client: CrustClient, settings: CrustSettings) -> dict[str, Any]:
    """One order's price per size at the market's stored fees (the submitter's :meth:`order_costs`), tip
    included; a batch also pays its extrinsic's fee, which only a signed extrinsic can be priced for."""
    orderable = {label: size for label, size in PRICE_SIZES.items() if size < client.max_file_size}
    costs = dict(zip(orderable, client.order_costs(list(orderable.values())), strict=True))
    return {"fees": {k: str(v) for k, v in client.fees().items()}, "tip": str(settings.tips),
            "orders": {label: str(costs[label]) if label in costs else None for label in PRICE_SIZES}}


def cru(units: int | str) -> str:
    """Smallest units as CRU with all 12 decimals (no float rounding)."""
    whole, frac = divmod(int(units), CRU)
    return f"{whole}.{frac:012d} CRU"


def _binary(size: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", MB), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:g} {unit}"
    return f"{size} bytes"


def format_report(report: dict[str, Any]) -> str:
    """The report for people: one line per finding, the verdict last."""
    lines = [f"w3gate crust check: {report['url']}"]

    def add(label: str, text: str) -> None:
        lines.append(f"  {label:<9} {text}")

    if "spec_version" in report:
        name = f"{report['spec_name']}, " if report.get("spec_name") else ""
        add("chain", f"{report['chain']}, runtime spec {report['spec_version']} ({name}{report['metadata']} metadata)")
        types = report["types"]
        known = (f"specs {', '.join(types['verified_specs'])} of {report['chain']}" if types["verified_specs"]
                 else f"no spec of {report['chain']}")
        if types["source"] == "metadata":
            add("types", "the runtime describes its own types (metadata v14 or later)")
        elif types["source"] == "shipped":
            maps = "; ".join(f"Market.{m} = {t}" for m, t in types["maps"].items())
            add("types", f"verified by this release for specs {types['range']} ({maps})")
        elif types["source"] == "crust.typedefs":
            add("types", f"from your crust.typedefs file (NOT verified; this release verifies {known})")
        else:
            add("types", f"NONE verified for spec {report['spec_version']} (this release verifies {known})")
    if "ordering" in report:
        o = report["ordering"]
        add("ordering", f"{o['call']} ({o['arguments']} arguments), records in {o['files_map']}, renewal by "
                        f"{o['renewal']}")
        add("sizes", f"an order must be smaller than {o['max_file_size']} bytes ({_binary(o['max_file_size'])}, "
                     f"MaximumFileSize); files live {o['file_duration_blocks']} blocks")
    if "market_enabled" in report:
        add("market", "on" if report["market_enabled"] else "OFF")
    for m in report.get("records", []):
        bad = [r for r in m["sample"] if "error" in r]
        add("records", f"{m['map']}: {len(m['sample']) - len(bad)} of {len(m['sample'])} sampled records decode "
                       f"strictly as {m['type']}")
    if "prices" in report:
        p = report["prices"]
        for label, price in p["orders"].items():
            add("price" if label == next(iter(p["orders"])) else "",
                f"{label:>8}: " + (cru(price) if price is not None else "not orderable (at or over MaximumFileSize)"))
        add("", f"(the market's fees now, tip {cru(p['tip'])} included; each batch also pays its extrinsic fee)")
    if report.get("account"):
        a = report["account"]
        add("account", f"{a['address']}: usable {cru(a['usable'])} (free {cru(a['free'])}), nonce {a['nonce']}")
    for note in report["notes"]:
        add("note", note)
    for problem in report["problems"]:
        add("problem", problem)
    lines.append("  result    " + ("usable by this release" if report["usable"]
                                   else f"NOT usable by this release (exit status {report['exit_status']})"))
    return "\n".join(lines)
