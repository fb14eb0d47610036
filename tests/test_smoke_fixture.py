from helpers import tiny_config


def test_fixture_trains(omniglot_tiny, tmp_path):
    from dstcli.train import train

    train(tiny_config(omniglot_tiny, tmp_path / "run"))
    assert (tmp_path / "run" / "checkpoint.pt").exists()
