"""Adding recordings and the analysis job: real measurements, one bad file never sinks a batch."""
import numpy as np

from projects import jobs, sources


def test_analysis_measures_good_files_and_reports_bad_ones(store, ws, project, tone, tmp_path):
    good = tone("speech like.wav", seconds=3.0, amplitude=0.5)
    quiet = tone("quiet.wav", seconds=2.0, amplitude=0.05)
    corrupt = tmp_path / "inputs" / "broken.mp3"
    corrupt.write_bytes(b"ID3" + bytes(range(256)) * 8)
    empty = tmp_path / "inputs" / "empty.wav"
    empty.write_bytes(b"")
    files = [(p, None) for p in (good, quiet, corrupt, empty)]

    job, problems = sources.add_and_analyse(store, ws, project.name, files)
    assert problems == []
    final = jobs.run_job(store, ws, job.id)
    assert final.status == "done", final.error
    assert final.result["analysed"] == 2 and final.result["failed"] == 2

    by_name = {s.name: s for s in sources.list_sources(store, project.id)}
    assert abs(by_name["speech like.wav"].duration_s - 3.0) < 0.05
    assert by_name["quiet.wav"].lufs < by_name["speech like.wav"].lufs - 15
    assert by_name["speech like.wav"].peak_dbfs == np.float64(by_name["speech like.wav"].peak_dbfs)
    assert abs(by_name["speech like.wav"].peak_dbfs - 20 * np.log10(0.5)) < 0.3
    for name in ("broken.mp3", "empty.wav"):
        assert by_name[name].status == "failed" and by_name[name].error


def test_adding_the_same_file_twice_is_one_source(store, ws, project, tone):
    path = tone("a.wav")
    first, created = sources.add_source(store, ws, project, path)
    again, created_again = sources.add_source(store, ws, project, path, name="renamed.wav")
    assert created and not created_again and first.id == again.id


def test_uploaded_name_cannot_escape_the_project(store, ws, project, tone):
    src, _ = sources.add_source(store, ws, project, tone("x.wav"), name="../../../evil.wav")
    stored = ws.resolve(src.path)
    assert stored.is_relative_to(ws.project_dir(project.slug) / "sources")
    assert src.name == "evil.wav"
