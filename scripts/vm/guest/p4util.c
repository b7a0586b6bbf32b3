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
 *   p4util ws PORT SECONDS [MSG | +MS | =TEXT[|TEXT...] ...]
 *                                a WebSocket client (RFC 6455, written here
 *                                for the guest, which has no Python): to
 *                                127.0.0.1:PORT, sends each MSG as a masked
 *                                text frame, waits MS ms for +MS, and for
 *                                =TEXT until a frame holding one of the
 *                                TEXTs comes; prints every text frame
 *                                received, one a line; ends after the last
 *                                argument, or after SECONDS in all
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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

static int send_all(int fd, const unsigned char *p, size_t n) {
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k <= 0) return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* One masked text frame (a client's frames are masked, section 5.3). */
static int ws_send(int fd, const char *msg) {
    static const unsigned char key[4] = { 0x37, 0xfa, 0x21, 0x3d };
    size_t n = strlen(msg), h = 0;
    unsigned char *f = malloc(n + 14);
    if (!f) return -1;
    f[h++] = 0x81;
    if (n < 126) {
        f[h++] = 0x80 | (unsigned char)n;
    } else if (n < 65536) {
        f[h++] = 0x80 | 126;
        f[h++] = (unsigned char)(n >> 8);
        f[h++] = (unsigned char)n;
    } else {
        free(f);
        return -1;
    }
    memcpy(f + h, key, 4);
    h += 4;
    for (size_t i = 0; i < n; i++) f[h + i] = (unsigned char)msg[i] ^ key[i % 4];
    int r = send_all(fd, f, h + n);
    free(f);
    return r;
}

/* Whether the n bytes at p hold one of the '|'-separated texts of `any`. */
static int holds(const unsigned char *p, size_t n, const char *any) {
    while (*any) {
        size_t k = strcspn(any, "|");
        for (size_t i = 0; k > 0 && i + k <= n; i++)
            if (!memcmp(p + i, any, k)) return 1;
        any += k + (any[k] == '|');
    }
    return 0;
}

/* Read what is there (waiting until `end`, or with `until` until a frame
 * holds one of its texts: then 1) and print each whole text frame in `buf`
 * on a line; returns -1 when the connection ended. */
static int ws_pump(int fd, unsigned char *buf, size_t cap, size_t *len, double end, const char *until) {
    for (;;) {
        int ms = (int)((end - now()) * 1000);
        if (ms <= 0) return 0;
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, ms) <= 0) return 0;
        ssize_t k = recv(fd, buf + *len, cap - *len, 0);
        if (k <= 0) return -1;
        *len += (size_t)k;
        for (;;) {
            if (*len < 2) break;
            uint64_t n = buf[1] & 0x7f;
            size_t h = 2;
            if (n == 126) {
                if (*len < 4) break;
                n = ((uint64_t)buf[2] << 8) | buf[3];
                h = 4;
            } else if (n == 127) {
                if (*len < 10) break;
                n = 0;
                for (int i = 0; i < 8; i++) n = (n << 8) | buf[2 + i];
                h = 10;
            }
            if (n > cap - h) return -1; /* larger than we keep: give up */
            if (*len < h + n) break;
            int found = 0;
            if ((buf[0] & 0x0f) == 1) {
                fwrite(buf + h, 1, (size_t)n, stdout);
                putchar('\n');
                fflush(stdout);
                found = until && holds(buf + h, (size_t)n, until);
            } else if ((buf[0] & 0x0f) == 8) {
                return -1;
            }
            memmove(buf, buf + h + n, *len - h - (size_t)n);
            *len -= h + (size_t)n;
            if (found) return 1;
        }
    }
}

static int ws(int port, double seconds, int n, char **msgs) {
    double end = now() + seconds;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a)) { perror("p4util ws: connect"); return 1; }
    char req[256];
    snprintf(req, sizeof req,
             "GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", port);
    if (send_all(fd, (const unsigned char *)req, strlen(req))) { perror("p4util ws: send"); return 1; }
    /* The 101 answer, up to its blank line (read a byte at a time so no
     * frame after it is taken with it). */
    char head[2048];
    size_t hl = 0;
    while (hl + 1 < sizeof head && !(hl >= 4 && !memcmp(head + hl - 4, "\r\n\r\n", 4))) {
        if (recv(fd, head + hl, 1, 0) != 1) { fprintf(stderr, "p4util ws: no handshake\n"); return 1; }
        hl++;
    }
    head[hl] = 0;
    if (strncmp(head, "HTTP/1.1 101", 12)) { fprintf(stderr, "p4util ws: refused: %.60s\n", head); return 1; }
    static unsigned char buf[1 << 20];
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        if (msgs[i][0] == '+') {
            if (ws_pump(fd, buf, sizeof buf, &len, now() + atof(msgs[i] + 1) / 1000.0, NULL) < 0) return 0;
        } else if (msgs[i][0] == '=') {
            if (ws_pump(fd, buf, sizeof buf, &len, end, msgs[i] + 1) <= 0) return 0;
        } else if (ws_send(fd, msgs[i])) {
            perror("p4util ws: send");
            return 1;
        }
    }
    if (n == 0 || (msgs[n - 1][0] != '=' && msgs[n - 1][0] != '+'))
        ws_pump(fd, buf, sizeof buf, &len, end, NULL);
    close(fd);
    return 0;
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
    if (argc >= 4 && !strcmp(argv[1], "ws"))
        return ws(atoi(argv[2]), atof(argv[3]), argc - 4, argv + 4);
    fprintf(stderr, "usage: p4util hog CPU PRIO MS | tone FMT RATE CH SEG F... | now | ws PORT S MSG...\n");
    return 2;
}
