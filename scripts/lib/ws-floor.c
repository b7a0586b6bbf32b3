// The kernel's floor under "what N WebSocket clients add": every 1/60 s one
// send() of BYTES bytes to each of N loopback TCP connections (what phase4's
// p4-ws thread does once a turn's frames are framed and buffered), read by
// a child process with epoll. Prints the sending thread's CPU (user + system,
// getrusage RUSAGE_THREAD) as a percentage of one core. No WebSocket, no
// JSON, no queues: only the writes and the wake-ups of the reader they cause.
// Built and run by scripts/ws-floor.sh; 127.0.0.1 only.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { MAX_CONNS = 256, MAX_BYTES = 1 << 20, MAX_SECONDS = 600, RATE_HZ = 60 };

static int arg(const char *s, int lo, int hi, const char *what) {
  char *end;
  long v = strtol(s, &end, 10);
  if (*s == '\0' || *end != '\0' || v < lo || v > hi) {
    fprintf(stderr, "ws-floor: %s must be an integer in %d..%d, got '%s'\n", what, lo, hi, s);
    exit(2);
  }
  return (int)v;
}

static double thread_cpu_s(void) {
  struct rusage r;
  getrusage(RUSAGE_THREAD, &r);
  return r.ru_utime.tv_sec + r.ru_stime.tv_sec + (r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

// The reader: connect n times, then read everything until the sender closes.
static void reader(const struct sockaddr_in *a, int n) {
  static char buf[65536];
  int ep = epoll_create1(0);
  for (int i = 0; i < n; i++) {
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (c < 0 || connect(c, (const struct sockaddr *)a, sizeof *a) != 0) _exit(1);
    struct epoll_event e = {.events = EPOLLIN, .data.fd = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, c, &e);
  }
  int open_conns = n;
  struct epoll_event ev[64];
  while (open_conns > 0) {
    int k = epoll_wait(ep, ev, 64, 5000);
    if (k <= 0) _exit(k == 0 ? 0 : 1);  // nothing for 5 s: the sender is gone
    for (int i = 0; i < k; i++)
      if (read(ev[i].data.fd, buf, sizeof buf) <= 0) {
        close(ev[i].data.fd);
        open_conns--;
      }
  }
  _exit(0);
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: ws-floor CONNECTIONS BYTES SECONDS\n");
    return 2;
  }
  int n = arg(argv[1], 0, MAX_CONNS, "CONNECTIONS");
  int bytes = arg(argv[2], 1, MAX_BYTES, "BYTES");
  int secs = arg(argv[3], 1, MAX_SECONDS, "SECONDS");

  int ls = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof a;
  if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, MAX_CONNS) != 0 ||
      getsockname(ls, (struct sockaddr *)&a, &al) != 0) {
    perror("ws-floor: listen on 127.0.0.1");
    return 1;
  }
  pid_t child = 0;
  if (n > 0) {
    child = fork();
    if (child < 0) {
      perror("ws-floor: fork");
      return 1;
    }
    if (child == 0) reader(&a, n);
  }
  int fd[MAX_CONNS];
  for (int i = 0; i < n; i++) {
    int one = 1;
    fd[i] = accept(ls, NULL, NULL);
    if (fd[i] < 0) {
      perror("ws-floor: accept");
      return 1;
    }
    setsockopt(fd[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // as tungstenite's sockets
  }
  char *msg = calloc(1, (size_t)bytes);
  if (!msg) return 1;

  double cpu0 = thread_cpu_s();
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  for (long k = 0; k < (long)secs * RATE_HZ; k++) {
    t.tv_nsec += 1000000000L / RATE_HZ;
    if (t.tv_nsec >= 1000000000L) {
      t.tv_nsec -= 1000000000L;
      t.tv_sec++;
    }
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL);
    for (int i = 0; i < n; i++) send(fd[i], msg, (size_t)bytes, MSG_DONTWAIT | MSG_NOSIGNAL);
  }
  double cpu = thread_cpu_s() - cpu0;
  printf("WS_FLOOR connections=%d bytes=%d seconds=%d cpu_pct=%.3f\n", n, bytes, secs, 100.0 * cpu / secs);
  for (int i = 0; i < n; i++) close(fd[i]);
  if (child > 0) waitpid(child, NULL, 0);
  free(msg);
  return 0;
}
