"""The pipeline report's speed sentences: int8 against float per runtime, with the host CPU's
int8 features beside them (a desktop without VNNI is not the phone)."""

from edgeship.report_page import Row, speed_lines


def _row(artifact: str, p50_us: float) -> Row:
    return Row(artifact, "litert", None, None, None, None, None, p50_us, None)


def test_speed_sentences_name_the_host_cpu_and_the_browser_measurement():
    rows = [_row("model_float.tflite", 26.9), _row("model_int8.tflite", 76.5)]
    cpu = {"machine": "x86_64", "avx2": True, "avx512": False, "vnni": False,
           "int8_pair_sums": "saturating-int16"}
    lines = speed_lines(rows, cpu)
    assert "model_int8.tflite 76.5 µs (2.84x, slower)" in lines[0]
    assert lines[1].startswith("Host CPU: x86_64, AVX2 yes, AVX512 no, VNNI no")
    assert "web_int8_speed" in lines[1]
    assert speed_lines(rows) == lines[:1]  # no bench "cpu" record: no CPU sentence
    assert speed_lines([_row("model_float.tflite", 26.9)], cpu) == []  # nothing to compare
