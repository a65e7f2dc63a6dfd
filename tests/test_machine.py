from imagerec import machine


def test_versions_name_the_libraries_and_the_cpu():
    versions = machine.versions()
    assert {"imagerec", "tensorflow", "keras", "numpy", "python", "cpu"} <= set(versions)
    assert versions["cpu"] == machine.cpu_name() and versions["cpu"]
    assert isinstance(machine.cpu_has_bf16(), bool)
