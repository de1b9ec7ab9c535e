@preconcurrency import Glibc

/// Results printed on stdout keep their place among the stderr progress lines when both go to one
/// log file (a pipe is otherwise block-buffered).
func lineBufferedStdout() { setvbuf(stdout, nil, _IOLBF, 0) }
