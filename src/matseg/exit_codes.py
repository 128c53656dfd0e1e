"""Exit codes of every ``matseg`` command, in one place (the README's table lists the same).

=====  ================  ==========================================================================
code   name              meaning
=====  ================  ==========================================================================
0      ``OK``            everything finished (``check``: no violation)
1      ``FAILED``        some items failed, the rest finished (``check``: violations found;
                         ``predict``/``segment``: an image failed; ``show``: nothing to show)
2      ``USAGE``         bad command line, configuration or input; nothing was run
3      ``ENVIRONMENT``   the job was aborted because the machine cannot take its output (disk
                         full, quota, output folder read-only, gone or no longer permitted);
                         finished items are kept and a rerun resumes
130    ``INTERRUPTED``   Ctrl-C (128 + SIGINT); finished items are kept and a rerun resumes
=====  ================  ==========================================================================
"""

OK = 0
FAILED = 1
USAGE = 2
ENVIRONMENT = 3
INTERRUPTED = 130
