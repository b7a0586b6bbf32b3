/*
 * alsa-lib's error messages, routed into phase4's logging.
 *
 * alsa-lib prints its errors to stderr unless a handler is installed with
 * snd_lib_error_set_handler(), and the handler is variadic, which Rust
 * cannot define. This handler formats the message into a fixed buffer on the
 * stack and hands it to p4_alsa_error() (Rust: a lock-free bounded queue
 * that the supervisor drains and logs, rate-limited). It may run on the
 * capture thread: it neither allocates nor locks (vsnprintf into a stack
 * buffer; alsa-lib's formats are plain %s/%d/%i/%u/%x).
 *
 * The two alsa-lib declarations are written out instead of including
 * <alsa/asoundlib.h>, so that a cross build needs no target headers.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

typedef void (*p4_snd_lib_error_handler_t)(const char *file, int line,
                                           const char *function, int err,
                                           const char *fmt, ...);
extern int snd_lib_error_set_handler(p4_snd_lib_error_handler_t handler);
extern const char *snd_strerror(int errnum);

/* Defined in src/capture/alsa_log.rs. */
extern void p4_alsa_error(const char *msg, size_t len);

#define P4_ALSA_MSG 240

static size_t clamp_len(int n, size_t room) {
    if (n < 0)
        return 0;
    return (size_t)n >= room ? room - 1 : (size_t)n;
}

static void p4_handler(const char *file, int line, const char *function,
                       int err, const char *fmt, ...) {
    char buf[P4_ALSA_MSG];
    size_t n = clamp_len(snprintf(buf, sizeof buf, "%s:%d:(%s) ",
                                  file ? file : "?", line,
                                  function ? function : "?"),
                         sizeof buf);
    va_list ap;
    va_start(ap, fmt);
    n += clamp_len(vsnprintf(buf + n, sizeof buf - n, fmt ? fmt : "", ap),
                   sizeof buf - n);
    va_end(ap);
    if (err != 0)
        n += clamp_len(snprintf(buf + n, sizeof buf - n, ": %s",
                                snd_strerror(err)),
                       sizeof buf - n);
    p4_alsa_error(buf, n);
}

int p4_alsa_errors_install(void) {
    return snd_lib_error_set_handler(p4_handler);
}
