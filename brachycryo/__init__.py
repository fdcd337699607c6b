"""brachycryo: treatment planning for combined I-125 seed brachytherapy and cryoablation.

One import package; its subpackages are layered, each importing only from those below it
(``tests/test_layers.py`` enforces this, function-level imports included)::

    cli                                        the command line (nothing imports it)
    reports                                    HTML pages, plots, 3-D pictures
    planning | postimplant | cohort            workflows
    qa | phantoms                              DVH and metrics; synthetic patients
    dicom_io                                   DICOM in and out of the core types
    dose_kernels | cryo_iceball                physics (TG-43 dose, bioheat ice balls)
    core                                       Grid, errors, backend, atomic files, Seeds

Importing this package imports none of them.
"""

__version__ = "0.1.0"
