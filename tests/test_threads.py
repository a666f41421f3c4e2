import torch

from rdiff.threads import auto_threads, configure_threads, idle_cores


def test_busy_machines_get_one_thread_idle_ones_all_cores():
    assert idle_cores(cores=2, load=0.0) == 2
    assert idle_cores(cores=2, load=10.0) == 1
    assert idle_cores(cores=16, load=4.2) == 12
    assert auto_threads(concurrent_jobs=2, cores=2, load=0.0) == 1
    assert auto_threads(concurrent_jobs=3, cores=16, load=0.0) == 5


def test_configure_threads_sets_torch():
    before = torch.get_num_threads()
    try:
        assert configure_threads(1) == 1 and torch.get_num_threads() == 1
        n = configure_threads(None)
        assert n >= 1 and torch.get_num_threads() == n
    finally:
        torch.set_num_threads(before)
