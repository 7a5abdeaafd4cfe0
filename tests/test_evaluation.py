from shardlens.evaluation import cer, edit_distance


def test_edit_distance_and_cer():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3
    assert cer("Hello  world", "Hello world") == 0.0
    assert cer("Hellp world", "Hello world") == 1 / 11
    assert cer("", "") == 0.0 and cer("x", "") == 1.0
