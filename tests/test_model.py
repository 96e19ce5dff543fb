"""The isolation-forest model: the estimator contract, a known outlier, the
model file (round trip, and refusal of mismatched, tampered or unsafe files),
the verdict joined to rule alerts, and the baseline's destinations known to
bulk-upload-new-destination."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from gen_traffic import Capture, at

from detector.alerts.record import Alert, to_ecs
from detector.detect.model import (
    MODEL_COLUMNS,
    MODEL_FORMAT,
    QUANTILE_GRID,
    EgressModel,
    ModelVerdict,
    above_usual,
    build_history,
    egress_candidate,
    load_model,
    model_alerts,
    model_matrix,
    one_way,
    save_model,
    with_novelty,
)
from detector.detect.rules import ScanContext, run_rules
from detector.errors import ModelError
from detector.features import FEATURE_NAMES
from detector.pipelines.scan import scan_captures
from detector.policy import parse_policy

ZONE = "Asia/Taipei"
POLICY = """
[site]
name = "test-office"
timezone = "Asia/Taipei"

[business_hours]
start = "08:30"
end = "17:30"

[networks]
internal = ["10.0.0.0/8"]
"""
MB = 1_000_000


class Payload:
    """Stands for any object a crafted model file might try to build."""


def office(days: int = 14, hosts: int = 8, seed: int = 0) -> pd.DataFrame:
    """Host windows of a quiet office: every host sends about 100 kB a window
    in business hours and 5 kB at night (log-normal), to a few destinations."""
    rng = np.random.default_rng(seed)
    starts = pd.date_range("2026-01-05", periods=days * 144, freq="10min", tz=ZONE)
    frames = []
    for h in range(hosts):
        n = len(starts)
        hour = starts.hour.to_numpy()
        day = (starts.day_of_week.to_numpy() < 5) & (hour >= 9) & (hour < 17)
        out = rng.lognormal(np.where(day, np.log(1e5), np.log(5e3)), 0.8).astype(np.int64)
        inn = out * rng.integers(2, 20, n)
        frame = pd.DataFrame({"host": f"10.8.10.{h + 1}", "window_start": starts})
        frame["window_end"] = frame["window_start"] + pd.Timedelta(minutes=10)
        frame["bytes_out"] = out
        frame["packets_out"] = out // 1000 + 1
        frame["bytes_in"] = inn
        frame["packets_in"] = inn // 1200 + 1
        frame["flows"] = rng.integers(1, 6, n)
        frame["external_destinations"] = rng.integers(1, 4, n)
        frame["external_ports"] = 1
        frame["new_destinations"] = 0
        frame["largest_upload"] = out // 2
        frame["upload_download_ratio"] = out / inn
        frame["internal_bytes"] = rng.integers(0, 100_000, n)
        frame["internal_packets"] = rng.integers(0, 100, n)
        frame["off_hours"] = (~day).astype(np.int64)
        frame["hour_of_week"] = starts.day_of_week.to_numpy() * 24 + hour
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)[["host", "window_start", "window_end",
                                                 *FEATURE_NAMES]]  # fmt: skip


@pytest.fixture(scope="module")
def baseline() -> pd.DataFrame:
    return office()


@pytest.fixture(scope="module")
def fitted(baseline: pd.DataFrame) -> EgressModel:
    return EgressModel(n_estimators=50, random_state=3).fit(baseline)


@pytest.fixture(scope="module")
def policy():
    return parse_policy(POLICY, "test.toml")


def leak(features: pd.DataFrame, sent: int = 200 * MB) -> pd.DataFrame:
    """A copy of one night window (Wednesday 03:00) with ``sent`` bytes out to
    one new outside address."""
    night = features[(features["host"] == "10.8.10.3") & (features["hour_of_week"] == 2 * 24 + 3)]
    row = night.iloc[[0]].copy()
    row["bytes_out"] = sent
    row["packets_out"] = sent // 1500
    row["largest_upload"] = sent
    row["upload_download_ratio"] = sent / row["bytes_in"]
    row["new_destinations"] = 1
    row["new_destination_bytes"] = sent
    row["unseen_destination_bytes"] = sent
    return row


# -- the estimator contract ----------------------------------------------------------


def test_init_only_stores_keyword_parameters():
    model = EgressModel(n_estimators=7, percentile=99.0, random_state=1)
    assert model.get_params() == {"n_estimators": 7, "max_samples": 2048, "percentile": 99.0,
                                  "random_state": 1}  # fmt: skip
    assert not [name for name in vars(model) if name.endswith("_")]
    with pytest.raises(TypeError):
        EgressModel(7)  # type: ignore[misc]
    assert model.set_params(n_estimators=9) is model and model.n_estimators == 9
    with pytest.raises(ValueError, match="unknown parameter 'trees'"):
        model.set_params(trees=3)
    from sklearn.base import clone

    assert clone(model).get_params() == model.get_params()


def test_fit_returns_self_with_learned_attributes(baseline):
    model = EgressModel(n_estimators=20, random_state=0)
    assert model.fit(baseline) is model
    assert model.n_windows_ == len(baseline)
    assert model.n_hosts_ == 8 and model.n_host_days_ == 8 * 14
    assert list(model.history_.hosts) == sorted(baseline["host"].unique())
    assert model.forest_.n_features_in_ == len(MODEL_COLUMNS)
    assert model.window_minutes_ == 10
    assert model.threshold_ == pytest.approx(model.threshold_at(99.5))
    assert model.baseline_quantiles_.shape == QUANTILE_GRID.shape
    assert 0 < model.n_calibration_days_ < model.n_host_days_
    # Calibrated on each host-day's highest score above usual: beyond 99.5 % of them.
    assert model.threshold_ > 0.5
    days = baseline["window_start"].dt.date
    daily = pd.Series(model.predict(baseline)).groupby([baseline["host"], days]).any()
    assert daily.mean() <= 0.01


def test_threshold_is_calibrated_on_days_the_model_did_not_learn_from(baseline):
    """A naive reference: forests (on the windows above usual) and histories
    fitted on even and odd local days, each scoring the other half; the
    threshold is numpy's 99.5th percentile of the highest score of each
    host-day with a window above usual, among those windows (not only the
    candidate ones: far fewer, their 99.5th percentile was their highest)."""
    from sklearn.ensemble import IsolationForest

    model = EgressModel(n_estimators=20, random_state=2).fit(baseline)
    local_day = (baseline["window_start"].dt.tz_localize(None) - pd.Timestamp("1970-01-01")).dt.days
    daily_max = {}
    for fold in (0, 1):
        learned = baseline[local_day % 2 != fold]
        tested = baseline[local_day % 2 == fold]
        history = build_history(learned)
        above = above_usual(learned, history)
        forest = IsolationForest(n_estimators=20, max_samples=min(2048, int(above.sum())),
                                 random_state=2)  # fmt: skip
        forest.fit(model_matrix(learned[above], history))
        scores = -forest.score_samples(model_matrix(tested, history))
        calibrated = above_usual(tested, history)
        keys = zip(tested["host"], local_day[tested.index], strict=True)
        for key, score, ok in zip(keys, scores, calibrated, strict=True):
            if ok:
                daily_max[key] = max(daily_max.get(key, 0.0), score)
    assert len(daily_max) == model.n_calibration_days_
    # More than the host-days with a candidate window (what format 4 used).
    candidate_days = pd.Series(model.candidates(baseline)).groupby(
        [baseline["host"], local_day]).any()  # fmt: skip
    assert model.n_calibration_days_ > candidate_days.sum()
    expected = np.quantile(np.array(list(daily_max.values())), 0.995)
    assert model.threshold_ == pytest.approx(expected, abs=1e-4)


def test_unfitted_model_and_bad_parameters_say_what_is_wrong(baseline):
    with pytest.raises(ValueError, match="not fitted yet"):
        EgressModel().score_samples(baseline)
    with pytest.raises(ValueError, match="percentile must be above 0 and at most 100, got 101"):
        EgressModel(percentile=101).fit(baseline)
    with pytest.raises(ValueError, match="lack the columns bytes_out"):
        EgressModel().fit(baseline.drop(columns=["bytes_out"]))


def test_deterministic_with_a_seed(baseline):
    a = EgressModel(n_estimators=20, random_state=5).fit(baseline).score_samples(baseline)
    b = EgressModel(n_estimators=20, random_state=5).fit(baseline).score_samples(baseline)
    c = EgressModel(n_estimators=20, random_state=6).fit(baseline).score_samples(baseline)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_transform_columns(baseline, fitted):
    matrix = model_matrix(baseline.assign(new_destination_bytes=0), fitted.history_)
    assert matrix.shape == (len(baseline), len(MODEL_COLUMNS))
    first = baseline.iloc[0]
    col = dict(zip(MODEL_COLUMNS, matrix[0], strict=True))
    usual = fitted.history_.host_hour[0, first["hour_of_week"] % 24, 1]  # host 10.8.10.1
    excess = max(np.log1p(first["bytes_out"]) - np.log1p(usual), 0.0)
    assert col["bytes_out_vs_usual"] == pytest.approx(excess)
    assert col["unseen_destination_bytes_vs_usual"] == 0.0
    ratio = first["upload_download_ratio"]
    assert col["log_upload_download_ratio"] == pytest.approx(np.log1p(ratio))
    assert col["off_hours"] == first["off_hours"]
    assert col["unseen_destination_one_way"] == 0.0  # sent nothing to a never-seen address


# -- the known outlier ---------------------------------------------------------------


def test_a_200_mb_night_upload_is_the_outlier_and_explained(baseline, fitted):
    test = pd.concat([baseline.iloc[:500], leak(baseline)], ignore_index=True)
    scores = fitted.score_samples(test)
    assert int(np.argmax(scores)) == len(test) - 1
    flagged = fitted.predict(test)
    assert flagged[-1] and flagged[:-1].sum() <= 2
    assert fitted.percentile_of(scores[-1:])[0] == 100.0
    why = fitted.explain(test.iloc[[-1]])[0]
    assert why.startswith("bytes out 200.0 MB vs usual ")
    assert "at this hour" in why
    assert "200.0 MB to an outside address no host of the site had used (0 B back)" in why
    # New to the host only (the site knew the address): said so.
    known_to_site = test.iloc[[-1]].assign(unseen_destination_bytes=0)
    assert "200.0 MB to 1 new outside destination" in fitted.explain(known_to_site)[0]
    assert why.endswith("outside business hours")


def test_a_quiet_window_is_not_an_egress_anomaly(baseline, fitted):
    # Sending nothing outside is not egress: score 0, never flagged.
    quiet = baseline.iloc[[0]].assign(bytes_out=0, packets_out=0, largest_upload=0)
    assert fitted.score_samples(quiet)[0] == 0.0
    assert not fitted.predict(quiet)[0]


def test_an_unknown_host_is_said_so(baseline, fitted):
    stranger = leak(baseline).assign(host="10.8.10.99")
    assert fitted.explain(stranger)[0].startswith("a host not seen in the baseline; bytes out")


# -- the model file --------------------------------------------------------------------


def test_save_and_load_round_trip(tmp_path, baseline, fitted, policy):
    path = tmp_path / "site.model"
    save_model(fitted, path, policy)
    loaded = load_model(path, policy)
    assert np.array_equal(loaded.score_samples(baseline), fitted.score_samples(baseline))
    assert loaded.threshold_ == fitted.threshold_
    assert loaded.get_params() == fitted.get_params()
    assert loaded.n_host_days_ == fitted.n_host_days_ and loaded.span_ == fitted.span_
    meta = loaded.meta_
    assert meta["features"] == FEATURE_NAMES
    assert meta["model_columns"] == list(MODEL_COLUMNS)
    assert meta["policy_fingerprint"] == policy.fingerprint()
    assert meta["training"]["windows"] == len(baseline)
    import sklearn

    assert meta["sklearn_version"] == sklearn.__version__
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == [
            "devices.npz", "forest.skops", "history.npz", "meta.json"
        ]  # fmt: skip
    assert len(loaded.devices_) == meta["training"]["devices"] == 0  # fitted without cards


def _rewrite(path: Path, member: str, data: bytes, *, fix_hash: bool) -> None:
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members[member] = data
    if fix_hash and member != "meta.json":
        meta = json.loads(members["meta.json"])
        meta["sha256"][member] = hashlib.sha256(data).hexdigest()
        members["meta.json"] = json.dumps(meta).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, value in members.items():
            archive.writestr(name, value)


def test_tampered_member_is_refused(tmp_path, fitted, policy):
    path = tmp_path / "site.model"
    save_model(fitted, path, policy)
    with zipfile.ZipFile(path) as archive:
        forest = archive.read("forest.skops")
    _rewrite(path, "forest.skops", forest[:-10] + b"x" * 10, fix_hash=False)
    with pytest.raises(ModelError) as caught:
        load_model(path, policy)
    message = str(caught.value)
    assert "forest.skops does not match its recorded checksum" in message
    assert "retrain: egress-detector train" in message and "\n" not in message


def test_untrusted_types_are_refused_even_with_a_matching_checksum(tmp_path, fitted, policy):
    import skops.io as sio

    path = tmp_path / "site.model"
    save_model(fitted, path, policy)
    # A file that would make the loader build an object of a type we never trust.
    _rewrite(path, "forest.skops", sio.dumps({"f": Payload()}), fix_hash=True)
    with pytest.raises(ModelError, match=r"not trusted \(test_model.Payload\); refusing"):
        load_model(path, policy)
    # A trusted type that is not a forest.
    from sklearn.linear_model import LinearRegression

    _rewrite(path, "forest.skops", sio.dumps(LinearRegression()), fix_hash=True)
    with pytest.raises(ModelError, match="holds a LinearRegression, not an IsolationForest"):
        load_model(path, policy)


def test_history_with_pickled_objects_is_refused(tmp_path, fitted, policy):
    path = tmp_path / "site.model"
    save_model(fitted, path, policy)
    buffer = io.BytesIO()
    arrays = fitted.history_.arrays()
    arrays["hosts"] = np.array([object()], dtype=object)
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    _rewrite(path, "history.npz", buffer.getvalue(), fix_hash=True)
    with pytest.raises(ModelError, match="history.npz: hosts.npy holds Python objects"):
        load_model(path, policy)


def test_mismatched_policy_and_features_are_refused(tmp_path, fitted, policy):
    path = tmp_path / "site.model"
    save_model(fitted, path, policy)
    other = parse_policy(POLICY.replace("Asia/Taipei", "Europe/Paris"), "paris.toml")
    with pytest.raises(ModelError) as caught:
        load_model(path, other)
    message = str(caught.value)
    assert "trained under another site policy" in message and "site.timezone differ" in message
    assert "egress-detector train --policy" in message
    # Rule thresholds and the percentile are not what the model learned from.
    looser = parse_policy(POLICY + "\n[model]\npercentile = 99.9\n", "p.toml")
    assert load_model(path, looser).threshold_ == fitted.threshold_

    with zipfile.ZipFile(path) as archive:
        meta = json.loads(archive.read("meta.json"))
    meta["features"] = [*FEATURE_NAMES[:-1], "dns_queries"]
    _rewrite(path, "meta.json", json.dumps(meta).encode(), fix_hash=False)
    with pytest.raises(ModelError, match="missing hour_of_week; unknown dns_queries.*retrain"):
        load_model(path, policy)


def test_not_a_model_file(tmp_path, policy):
    junk = tmp_path / "junk.model"
    junk.write_bytes(b"\x80\x04not a zip")
    with pytest.raises(ModelError, match="not an egress-detector model file"):
        load_model(junk, policy)
    with pytest.raises(ModelError, match="no such file"):
        load_model(tmp_path / "missing.model", policy)
    other = tmp_path / "other.model"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("model.pkl", b"")
    with pytest.raises(ModelError, match="holds model.pkl; expected meta.json"):
        load_model(other, policy)


# -- the verdict in alerts -------------------------------------------------------------


def _verdict(model: EgressModel, windows: pd.DataFrame) -> ModelVerdict:
    scores = model.score_samples(windows)
    return ModelVerdict(windows, scores, model.percentile_of(scores), model.predict(windows),
                        model.threshold_)  # fmt: skip


def test_model_alone_is_a_model_anomaly_alert(baseline, fitted, policy):
    window = leak(baseline)
    alerts = model_alerts(fitted, _verdict(fitted, window), None, policy, [])
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert.rule_id == "model-anomaly" and alert.source_ip == "10.8.10.3"
    assert alert.source_bytes == 200 * MB
    doc = to_ecs(alert, policy.zone, policy.site_name)
    verdict = doc["egress"]["model"]
    assert set(verdict) >= {"score", "percentile", "explanation"}
    assert verdict["score"] > fitted.threshold_ and verdict["percentile"] == 100.0
    assert verdict["explanation"].startswith("bytes out 200.0 MB")
    assert "the model finds this unusual" in alert.message


def test_rule_and_model_on_the_same_window_are_one_alert(baseline, fitted, policy):
    window = leak(baseline)
    start = int(window["window_start"].iloc[0].value)
    rule_alert = Alert("offhours-bulk-egress", "Bulk upload outside business hours", 3,
                       start + 60 * 10**9, start + 300 * 10**9, "10.8.10.3",
                       "10.8.10.3 sent 200.0 MB ...", source_bytes=200 * MB,
                       direction="egress")  # fmt: skip
    elsewhere = Alert("offhours-bulk-egress", "x", 3, start, start + 1, "10.8.10.4", "other host",
                      direction="egress")  # fmt: skip
    alerts = model_alerts(fitted, _verdict(fitted, window), None, policy, [rule_alert, elsewhere])
    assert [a.rule_id for a in alerts] == ["offhours-bulk-egress", "offhours-bulk-egress"]
    joined = next(a for a in alerts if a.source_ip == "10.8.10.3")
    assert joined.evidence["model"]["explanation"].startswith("bytes out 200.0 MB")
    assert joined.message.startswith("10.8.10.3 sent 200.0 MB ...; the model finds this unusual")
    assert "model" not in next(a for a in alerts if a.source_ip == "10.8.10.4").evidence


def test_consecutive_flagged_windows_are_one_alert(baseline, fitted, policy):
    first = leak(baseline)
    second = first.assign(window_start=first["window_start"] + pd.Timedelta(minutes=10),
                          window_end=first["window_end"] + pd.Timedelta(minutes=10))  # fmt: skip
    later = first.assign(window_start=first["window_start"] + pd.Timedelta(hours=3),
                         window_end=first["window_end"] + pd.Timedelta(hours=3))  # fmt: skip
    windows = pd.concat([first, second, later], ignore_index=True)
    alerts = model_alerts(fitted, _verdict(fitted, windows), None, policy, [])
    assert sorted(a.evidence["model"]["windows"] for a in alerts) == [1, 2]
    assert sorted(a.source_bytes for a in alerts) == [200 * MB, 400 * MB]


# -- known destinations ----------------------------------------------------------------


def test_baseline_destinations_are_not_new_to_bulk_upload_rule(tmp_path, policy):
    cap = Capture().transfer("10.8.10.3", "203.0.113.9", start=at("2026-02-04 10:00", ZONE),
                             seconds=600, bytes_out=150 * MB)  # fmt: skip
    result = scan_captures([cap.write(tmp_path / "c.pcap")], policy)
    assert [a.rule_id for a in result.alerts] == ["bulk-upload-new-destination"]
    pairs = result.traffic.frame[["host_id", "peer_id"]].drop_duplicates()
    known = pd.MultiIndex.from_frame(pairs)
    again = run_rules(ScanContext(policy, result.traffic, 10, known_destinations=known))
    assert again == []
    # Known pairs of another host do not hide this one.
    other = pd.MultiIndex.from_arrays([pairs["host_id"] + 100, pairs["peer_id"]])
    third = run_rules(ScanContext(policy, result.traffic, 10, known_destinations=other))
    assert [a.rule_id for a in third] == ["bulk-upload-new-destination"]
    assert "(not in the model baseline)" in third[0].message


# -- the commands ----------------------------------------------------------------------


def _office_capture(days: range, seed: int) -> Capture:
    """Three hosts, each one small upload an hour to its usual service (more in
    business hours), for the given days of February 2026 (local)."""
    rng = np.random.default_rng(seed)
    cap = Capture()
    for day in days:
        for hour in range(24):
            for h in range(3):
                busy = 9 <= hour < 17 and (day + 1) % 7 not in (0, 6)  # 2026-02-01 was a Sunday
                start = at(f"2026-02-{day:02d} {hour:02d}:{int(rng.integers(0, 50)):02d}", ZONE)
                sent = int(rng.uniform(100_000, 400_000) if busy else rng.uniform(2_000, 6_000))
                cap.transfer(f"10.8.10.{h + 1}", f"198.18.0.{h + 1}", start=start, seconds=30,
                             bytes_out=sent, bytes_in=sent * 3, sport=40000 + hour)  # fmt: skip
    return cap


def test_train_then_scan_with_the_model(tmp_path, capsys):
    from detector.cli.main import main

    (tmp_path / "site.toml").write_text(POLICY)
    baseline = _office_capture(range(2, 12), seed=1).write(tmp_path / "baseline.pcap")
    model = tmp_path / "site.model"
    assert main(["train", "--policy", str(tmp_path / "site.toml"), "-o", str(model),
                 str(baseline)]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "learned from" in err and "3 hosts" in err and "threshold" in err
    # Its SHA-256, for --model-sha256.
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    assert f"→ {model} (SHA-256 {digest}: pin it with --model-sha256)" in err

    # A night's 30 MB upload in one go to an address new to the site: under
    # offhours-bulk-egress's 50 MB, low-and-slow-egress's (one transfer to an
    # address no other host uses), with the model's verdict in the same alert.
    day = _office_capture(range(12, 13), seed=2)
    day.transfer("10.8.10.2", "203.0.113.77", start=at("2026-02-12 03:05", ZONE), seconds=300,
                 bytes_out=30 * MB, bytes_in=200_000)  # fmt: skip
    out = tmp_path / "alerts.jsonl"
    code = main(["scan", "--policy", str(tmp_path / "site.toml"), "--model", str(model),
                 "--model-sha256", digest, "--format", "jsonl", "-o", str(out),
                 str(day.write(tmp_path / "day.pcap"))])  # fmt: skip
    assert code == 1, capsys.readouterr().err
    alerts = [json.loads(line) for line in out.read_text().splitlines()]
    # Hosts on all night are always-on's (low); the model's verdict on the leak
    # is not folded into always-on's night.
    assert (alerts[0]["rule"]["id"], alerts[0]["source"]["ip"]) == (
        "low-and-slow-egress", "10.8.10.2")  # fmt: skip
    assert sorted((a["rule"]["id"], a["source"]["ip"]) for a in alerts[1:]) == [
        ("always-on", "10.8.10.1"),
        ("always-on", "10.8.10.2"),
        ("always-on", "10.8.10.3"),
    ]
    assert not any("model" in a["egress"] for a in alerts[1:])
    verdict = alerts[0]["egress"]["model"]
    assert verdict["explanation"].startswith("bytes out 30.")
    assert "to an outside address no host of the site had used" in verdict["explanation"]
    assert alerts[0]["destination"]["ip"] == "203.0.113.77"

    # The same kind of upload to a destination the site allowlisted after
    # training: unusual, but sanctioned, so no model-anomaly alert.
    day.transfer("10.8.10.3", "198.51.100.25", start=at("2026-02-12 04:05", ZONE), seconds=300,
                 bytes_out=30 * MB, bytes_in=200_000)  # fmt: skip
    day.write(tmp_path / "day2.pcap")
    (tmp_path / "allow.toml").write_text(
        POLICY + '[allowlist]\ndestinations = ["198.51.100.25/32"]\n'
    )
    for policy_file, expected in (("site.toml", ["10.8.10.2", "10.8.10.3"]),
                                  ("allow.toml", ["10.8.10.2"])):  # fmt: skip
        assert main(["scan", "--policy", str(tmp_path / policy_file), "--model", str(model),
                     "--format", "jsonl", "-o", str(out), str(tmp_path / "day2.pcap")]) == 1  # fmt: skip
        alerts = [json.loads(line) for line in out.read_text().splitlines()]
        judged = [a for a in alerts if a["rule"]["id"] == "model-anomaly" or "model" in a["egress"]]
        assert sorted(a["source"]["ip"] for a in judged) == expected

    # Another site's policy: one line, exit 2.
    capsys.readouterr()
    (tmp_path / "other.toml").write_text(POLICY.replace("08:30", "07:30"))
    assert main(["scan", "--policy", str(tmp_path / "other.toml"), "--model", str(model),
                 str(tmp_path / "day.pcap")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "business_hours differ" in err


def test_train_from_feature_files(tmp_path, capsys, baseline):
    from detector.cli.main import main

    (tmp_path / "site.toml").write_text(POLICY)
    baseline.iloc[: len(baseline) // 2].to_parquet(tmp_path / "a.parquet")
    baseline.iloc[len(baseline) // 2 :].to_csv(tmp_path / "b.csv", index=False)
    model = tmp_path / "site.model"
    assert main(["train", "--policy", str(tmp_path / "site.toml"), "-o", str(model), "--seed",
                 "4", str(tmp_path / "a.parquet"), str(tmp_path / "b.csv")]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "feature files carry no addresses" in err
    assert f"learned from {len(baseline):,} host windows of 8 hosts (112 host-days" in err
    loaded = load_model(model)
    assert loaded.random_state == 4 and len(loaded.history_.known_peer_lo) == 0

    # Unwritable output, a broken feature file: one line each, exit 2.
    assert main(["train", "-o", str(tmp_path / "no" / "such" / "dir.model"),
                 str(tmp_path / "a.parquet")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert f"cannot write {tmp_path / 'no' / 'such' / 'dir.model'}: No such file" in err
    assert "learned from" not in err  # reported before training, not after
    (tmp_path / "bad.csv").write_text("host,bytes_out\n10.0.0.1,5\n")
    assert main(["train", "-o", str(model), str(tmp_path / "bad.csv")]) == 2
    assert "lacks the columns window_start" in capsys.readouterr().err


# -- destinations new to the site, and what a window must be -----------------------------


def test_bytes_to_addresses_no_host_used_are_counted_per_address_so_far(tmp_path, policy):
    cap = Capture()
    for start, sent, sport in (("10:01", 3_000_000, 40001), ("10:11", 4_000_000, 40002)):
        cap.transfer("10.8.10.3", "203.0.113.9", start=at(f"2026-02-04 {start}", ZONE),
                     seconds=240, bytes_out=sent, sport=sport)  # fmt: skip
    # Another host reaches the same address later: new to it, not new to the site
    # since 10:01, but still within new_for_hours of the site's first contact.
    cap.transfer("10.8.10.5", "203.0.113.9", start=at("2026-02-04 10:12", ZONE), seconds=60,
                 bytes_out=1_000_000)  # fmt: skip
    # An address some host of the baseline used: known to the site.
    cap.transfer("10.8.10.4", "198.51.100.7", start=at("2026-02-04 10:02", ZONE), seconds=60,
                 bytes_out=2_000_000)  # fmt: skip
    result = scan_captures([cap.write(tmp_path / "c.pcap")], policy)
    traffic = result.traffic
    peers = np.unique(traffic.frame["peer_id"].to_numpy())
    known_site = peers[np.asarray(traffic.texts(peers)) == "198.51.100.7"]
    assert len(known_site) == 1
    out = with_novelty(result.features, traffic, policy, known_site=known_site)
    got = {
        (row.host, row.window_start.strftime("%H:%M")): (
            row.new_destination_bytes,
            row.unseen_destination_bytes,
        )
        for row in out.itertuples()
        if row.bytes_out
    }
    assert got == {
        ("10.8.10.3", "10:00"): (3_000_000, 3_000_000),
        ("10.8.10.3", "10:10"): (4_000_000, 7_000_000),  # 7 MB to that address so far
        ("10.8.10.5", "10:10"): (1_000_000, 1_000_000),
        ("10.8.10.4", "10:00"): (2_000_000, 0),
    }
    # On a baseline, an address the site uses again a day later is routine.
    cap.transfer("10.8.10.4", "203.0.113.9", start=at("2026-02-06 09:00", ZONE), seconds=60,
                 bytes_out=10_000)  # fmt: skip
    result = scan_captures([cap.write(tmp_path / "b.pcap")], policy)
    out = with_novelty(result.features, result.traffic, policy, baseline=True)
    assert int(out["unseen_destination_bytes"].sum()) == 2_000_000  # 198.51.100.7, once


def test_how_one_way_the_bytes_to_a_never_seen_address_are(tmp_path, policy):
    """A web site no host had visited that took 2 MB and sent 8 MB of pages
    back, then 1 MB more each way; an upload of 20 MB with 400 kB back; 500 kB
    to a second never-seen address beside the first, with nothing back (the
    address sent most to is the one weighed)."""
    cap = Capture()
    web, leak_to, beside = "203.0.113.20", "203.0.113.30", "203.0.113.21"
    cap.transfer("10.8.10.6", web, start=at("2026-02-04 10:01", ZONE), seconds=120,
                 bytes_out=2_000_000, bytes_in=8_000_000, sport=40011)  # fmt: skip
    cap.transfer("10.8.10.6", beside, start=at("2026-02-04 10:02", ZONE), seconds=60,
                 bytes_out=500_000, sport=40012)  # fmt: skip
    cap.transfer("10.8.10.6", web, start=at("2026-02-04 10:12", ZONE), seconds=60,
                 bytes_out=1_000_000, bytes_in=1_000_000, sport=40013)  # fmt: skip
    cap.transfer("10.8.10.7", leak_to, start=at("2026-02-04 10:21", ZONE), seconds=300,
                 bytes_out=20_000_000, bytes_in=400_000, sport=40014)  # fmt: skip
    result = scan_captures([cap.write(tmp_path / "c.pcap")], policy)
    out = with_novelty(result.features, result.traffic, policy)
    sent = out[out["bytes_out"] > 0]
    got = {
        (row.host, row.window_start.strftime("%H:%M")): (
            row.unseen_destination_bytes,
            row.unseen_destination_bytes_in,
        )
        for row in sent.itertuples()
    }
    assert got == {
        ("10.8.10.6", "10:00"): (2_000_000, 8_000_000),
        ("10.8.10.6", "10:10"): (3_000_000, 9_000_000),  # so far, both ways
        ("10.8.10.7", "10:20"): (20_000_000, 400_000),
    }
    assert one_way(sent).tolist() == pytest.approx([np.log(1.25), np.log(4 / 3), np.log(51)])


def test_what_a_window_must_be_to_be_a_candidate(baseline, fitted):
    history = fitted.history_
    night = leak(baseline, sent=0).iloc[0]  # 10.8.10.3, Wednesday 03:00
    host = history.host_index(np.array(["10.8.10.3"]))[0]
    most = history.host_hour[host, 3, 3]  # the most it sent in one window at 03:00 (±1 hour)
    busy = history.host_quantiles[host, 0, 1]  # bytes out over all hours, 95th percentile
    twice = 2 * (1 + history.host_hour[host, 3, 1]) - 1  # log1p(x) - log1p(p95) = log(2)
    record = max(most, busy, twice)
    day = 2 * 24 + 11
    out = [int(record) + 1, int(max(most, busy)) - 1, 5 * MB, 21 * MB, 5 * MB, 5 * MB, 5 * MB]
    windows = pd.DataFrame([night] * 7).assign(
        bytes_out=out,
        new_destination_bytes=0,
        unseen_destination_bytes=[0, 0, 5 * MB, 5 * MB, 0, 5 * MB, 5 * MB],
        # What the never-seen address sent back: a web site's pages.
        unseen_destination_bytes_in=[0, 0, 0, 0, 0, 2_500_000, 2_499_999],
        hour_of_week=[2 * 24 + 3, 2 * 24 + 3, day, day, day, day, day],
    )
    # Night: beyond its record at this hour and a busy window. Day: beyond its
    # record to never-seen addresses (none in this baseline), at least a
    # quarter of what it sent, and one way: more than twice what came back
    # (5,000,000 > 2 x 2,499,999 = 4,999,998; not > 2 x 2,500,000).
    got = egress_candidate(windows, history, knows_destinations=True)
    assert got.tolist() == [True, False, True, False, False, False, True]
    # A model that knows no destinations: a record at this hour, any hour.
    got = egress_candidate(windows, history, knows_destinations=False)
    assert got.tolist() == [True, False, True, True, True, True, True]


def test_an_allowlisted_backup_does_not_hide_an_upload_beside_it(baseline, fitted):
    """Issue 20, item 7: by day, 5 MB to a never-seen address in a window that
    sent 21 MB is under a quarter (4 x 5 = 20 MB < 21 MB); when 1 MB of the 21
    went to allowlisted destinations (a sanctioned backup), the quarter is of
    the other 20 MB and the window is a candidate; 1 byte less, it is not."""
    night = leak(baseline, sent=0).iloc[0]
    windows = pd.DataFrame([night] * 3).assign(
        bytes_out=21 * MB, new_destination_bytes=0, unseen_destination_bytes=5 * MB,
        unseen_destination_bytes_in=0, hour_of_week=2 * 24 + 11,
        allowlisted_bytes_out=[0, 1 * MB, 1 * MB - 1],
    )  # fmt: skip
    got = egress_candidate(windows, fitted.history_, knows_destinations=True)
    assert got.tolist() == [False, True, False]


def test_the_forest_threshold_decides_among_candidates(baseline, fitted):
    """Two windows that both pass the pre-condition: a business-hours window
    just beyond the host's record at that hour scores inside the baseline's
    host-days above usual and is not flagged; a 200 MB night upload scores beyond
    them and is. (That the threshold is numpy's percentile of the candidate
    host-days' highest out-of-sample scores: test_threshold_is_calibrated_...)"""
    history = fitted.history_
    host = history.host_index(np.array(["10.8.10.3"]))[0]
    record = max(history.host_hour[host, 11, 3], history.host_quantiles[host, 0, 1],
                 2 * (1 + history.host_hour[host, 11, 1]) - 1)  # fmt: skip
    sent = int(record) + 1
    day = baseline[(baseline["host"] == "10.8.10.3") & (baseline["hour_of_week"] == 2 * 24 + 11)]
    mild = day.iloc[[0]].assign(bytes_out=sent, packets_out=sent // 1000 + 1, bytes_in=5 * sent,
                                upload_download_ratio=0.2, largest_upload=sent // 2)  # fmt: skip
    windows = pd.concat([mild, leak(baseline)], ignore_index=True)
    assert fitted.candidates(windows).tolist() == [True, True]
    scores = fitted.score_samples(windows)
    assert scores[0] <= fitted.threshold_ < scores[1]
    assert fitted.predict(windows).tolist() == [False, True]
    assert fitted.percentile_of(scores).tolist()[1] == 100.0
    # The threshold, not the pre-condition, turned the first one down: at a
    # percentile its score is beyond, it is flagged too.
    low = float(fitted.percentile_of(scores[:1])[0]) - 1.0
    assert 0 < low < 99.5 and fitted.threshold_at(low) < scores[0]
    assert fitted.predict(windows, percentile=low).tolist() == [True, True]


def test_a_model_file_of_an_older_format_says_retrain(tmp_path, fitted, policy):
    path = tmp_path / "site.model"
    save_model(fitted, path, policy)
    with zipfile.ZipFile(path) as archive:
        meta = json.loads(archive.read("meta.json"))
    assert meta["format"] == MODEL_FORMAT == 6
    meta["format"] = 4
    _rewrite(path, "meta.json", json.dumps(meta).encode(), fix_hash=False)
    with pytest.raises(ModelError) as caught:
        load_model(path, policy)
    message = str(caught.value)
    assert "file format 4, this version reads formats 5 and 6" in message
    assert "retrain: egress-detector train" in message and "\n" not in message


# -- the device baseline (format 6) ------------------------------------------------------

ISOLATED_POLICY = POLICY + 'isolated = ["10.8.40.0/24"]\n'
CARDS = {"10.8.40.11": "00:1b:21:00:40:11", "10.8.40.12": "00:1b:21:00:40:12"}
GATEWAY_CARD = "00:1b:17:00:40:01"  # delivers outside traffic to the segment
LAPTOP_CARD = "3c:22:fb:12:34:56"  # Apple's OUI


def _segment(path: Path, day: int, cards: dict[str, str]) -> Path:
    """A morning of the isolated segment 10.8.40.0/24 on 2026-02-``day``: each
    card sends SMB to the file server 10.8.40.5 at 09:00 + k minutes, and an
    outside address answers 10.8.40.11 through the gateway's card."""
    from scapy.compat import raw
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    from gen_cases import write_pcap

    t = at(f"2026-02-{day:02d} 09:00", ZONE)
    frames = [(t + k * 60_000_000_000, raw(Ether(src=mac, dst="00:25:90:00:40:05")
               / IP(src=ip, dst="10.8.40.5") / TCP(sport=49152, dport=445, flags="S")))
              for k, (ip, mac) in enumerate(cards.items())]  # fmt: skip
    answer = IP(src="198.51.100.7", dst="10.8.40.11") / TCP(sport=443, dport=49153, flags="SA")
    frames.append((t + 30_000_000_000, raw(Ether(src=GATEWAY_CARD, dst=CARDS["10.8.40.11"])
                                            / answer)))  # fmt: skip
    return write_pcap(path, 1, sorted(frames, key=lambda f: f[0]))


def test_train_stores_the_cards_of_isolated_segments_and_scan_knows_them(tmp_path):
    from gen_models import as_format_5, read_members, write_members

    from detector.pipelines.train import train_model

    policy = parse_policy(ISOLATED_POLICY, "site.toml")
    segment = _segment(tmp_path / "segment.pcap", 1, CARDS)
    office = _office_capture(range(2, 5), seed=1).write(tmp_path / "office.pcap")
    model = train_model([segment, office], policy,
                        model=EgressModel(n_estimators=10, max_samples=256)).model  # fmt: skip
    # The two computers' cards and the gateway's (known from its delivering
    # traffic from beyond the segment), as the nightly learns them.
    assert model.known_devices() == {*CARDS.values(), GATEWAY_CARD}
    path = tmp_path / "site.model"
    save_model(model, path, policy)
    loaded = load_model(path, policy)
    assert loaded.devices_.tolist() == [0x001B170040_01, 0x001B21004011, 0x001B21004012]
    assert loaded.meta_["training"]["devices"] == 3
    # A later day: the same cards, and a laptop's on the segment. With the
    # model, new-device-isolated knows the segment's cards: the laptop alone.
    day = _segment(tmp_path / "day.pcap", 12, {**CARDS, "10.8.40.77": LAPTOP_CARD})
    result = scan_captures([day], policy, model=loaded)
    new = [a for a in result.alerts if a.rule_id == "new-device-isolated"]
    assert [(a.source_ip, a.evidence["mac"]) for a in new] == [("10.8.40.77", LAPTOP_CARD)]
    # The format-5 file of the same model (no device baseline) still loads;
    # with no known card the rule does not fire (every card would be new).
    old = tmp_path / "format5.model"
    write_members(old, as_format_5(read_members(path)))
    older = load_model(old, policy)
    assert older.meta_["format"] == 5 and len(older.devices_) == 0
    assert older.threshold_ == loaded.threshold_
    result = scan_captures([day], policy, model=older)
    assert [a for a in result.alerts if a.rule_id == "new-device-isolated"] == []
