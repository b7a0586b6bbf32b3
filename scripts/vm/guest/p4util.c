/*
 * p4util: small helpers for the test guest (built static, no libraries).
 *
 *   p4util hog CPU PRIO MS       spin at SCHED_FIFO PRIO on CPU for MS ms,
 *                                starving every lower-priority thread there
 *                                (an injected stall: a real overrun)
 *   p4util tone FMT RATE CH SEG F1 [F2 ...]
 *                                write raw interleaved samples to stdout: SEG
 *                                seconds of a sine at F1 Hz, then F2, ...
 *                                (FMT: S16_LE, S24_LE, S24_3LE, S32_LE) at
 *                                half scale, for `aplay -t raw`
 *   p4util now                   CLOCK_MONOTONIC in seconds, ns resolution
 */
#define _GNU_SOURCE
#include <math.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int hog(int cpu, int prio, long ms) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set)) { perror("sched_setaffinity"); return 1; }
    struct sched_param sp = { .sched_priority = prio };
    if (sched_setscheduler(0, SCHED_FIFO, &sp)) { perror("sched_setscheduler"); return 1; }
    double end = now() + ms / 1000.0;
    while (now() < end) {}
    return 0;
}

static int put(const void *p, size_t n) {
    return fwrite(p, 1, n, stdout) == n ? 0 : -1;
}

static int tone(const char *fmt, long rate, int ch, double seg, int nf, char **freqs) {
    int bytes;
    if (!strcmp(fmt, "S16_LE")) bytes = 2;
    else if (!strcmp(fmt, "S24_3LE")) bytes = 3;
    else if (!strcmp(fmt, "S24_LE") || !strcmp(fmt, "S32_LE")) bytes = 4;
    else { fprintf(stderr, "p4util: unknown format %s\n", fmt); return 2; }
    long n = (long)(seg * rate);
    for (int k = 0; k < nf; k++) {
        double f = atof(freqs[k]);
        for (long i = 0; i < n; i++) {
            double v = 0.5 * sin(2 * M_PI * f * i / rate);
            unsigned char b[4];
            if (bytes == 2) {
                int16_t s = (int16_t)lrint(v * 32767);
                memcpy(b, &s, 2);
            } else if (!strcmp(fmt, "S32_LE")) {
                int32_t s = (int32_t)lrint(v * 2147483647.0);
                memcpy(b, &s, 4);
            } else {
                int32_t s = (int32_t)lrint(v * 8388607);
                memcpy(b, &s, 4);
                if (bytes == 4) b[3] = (s < 0) ? 0xff : 0x00; /* S24_LE: sign in the pad */
            }
            for (int c = 0; c < ch; c++)
                if (put(b, bytes)) return 1;
        }
    }
    return fflush(stdout) ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc >= 5 && !strcmp(argv[1], "hog"))
        return hog(atoi(argv[2]), atoi(argv[3]), atol(argv[4]));
    if (argc >= 7 && !strcmp(argv[1], "tone"))
        return tone(argv[2], atol(argv[3]), atoi(argv[4]), atof(argv[5]), argc - 6, argv + 6);
    if (argc == 2 && !strcmp(argv[1], "now")) {
        printf("%.6f\n", now());
        return 0;
    }
    fprintf(stderr, "usage: p4util hog CPU PRIO MS | tone FMT RATE CH SEG F... | now\n");
    return 2;
}
