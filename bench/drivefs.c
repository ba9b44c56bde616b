/*
 * drivefs: a FUSE passthrough that behaves like a slow, Drive-like remote.
 *
 * Every metadata operation (lookup/stat, opendir, open, create, mkdir, unlink, rmdir,
 * rename, link, symlink, readlink, chmod, truncate, utimens, fsync, statfs) sleeps a
 * fixed latency before it runs, in the FUSE worker thread that serves it, so concurrent
 * requests overlap their latencies as they do on Drive.  Reads and writes are paced by
 * two token buckets (one per direction) so the data rate never exceeds the bandwidth cap.
 * The kernel caches attributes and entries for one second (the libfuse default), as
 * DriveFS caches metadata locally.
 *
 * The virtual file /.drivefs_stats (not listed) holds counters: operations, bytes read
 * and written, time spent sleeping.
 *
 * Build:  gcc -O2 -Wall -o drivefs drivefs.c $(pkg-config --cflags --libs fuse3)
 * Usage:  drivefs --source=DIR [--latency-ms=30] [--bandwidth-mbps=100] MOUNTPOINT -f
 *         (bandwidth in MB/s = 10^6 bytes per second; 0 disables the cap)
 */
#define FUSE_USE_VERSION 31
#define _GNU_SOURCE

#include <fuse.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <unistd.h>
#include <fcntl.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <time.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/time.h>

#define STATS_PATH "/.drivefs_stats"

static struct options {
    const char *source;
    int latency_ms;
    int bandwidth_mbps;
    int show_help;
} options;

#define OPTION(t, p) {t, offsetof(struct options, p), 1}
static const struct fuse_opt option_spec[] = {
    OPTION("--source=%s", source),
    OPTION("--latency-ms=%d", latency_ms),
    OPTION("--bandwidth-mbps=%d", bandwidth_mbps),
    OPTION("-h", show_help),
    OPTION("--help", show_help),
    FUSE_OPT_END
};

static atomic_ullong n_meta_ops, n_reads, n_writes, bytes_read, bytes_written, slept_us;

struct bucket {
    pthread_mutex_t lock;
    double next_free; /* monotonic seconds at which the link is free again */
};
static struct bucket down = {PTHREAD_MUTEX_INITIALIZER, 0}, up = {PTHREAD_MUTEX_INITIALIZER, 0};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_until(double t)
{
    double d = t - now_s();
    if (d <= 0)
        return;
    struct timespec ts = {(time_t)d, (long)((d - (time_t)d) * 1e9)};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
    atomic_fetch_add(&slept_us, (unsigned long long)(d * 1e6));
}

/* One metadata round trip. */
static void latency(void)
{
    atomic_fetch_add(&n_meta_ops, 1);
    if (options.latency_ms > 0)
        sleep_until(now_s() + options.latency_ms / 1000.0);
}

/* Pace n bytes through a link of the configured bandwidth: a token bucket holding at
 * most BURST_S seconds of unused link time, so a client that pauses between requests
 * is not charged for its own pauses, but can never exceed the cap over a longer span. */
#define BURST_S 0.05
static void pace(struct bucket *b, size_t n)
{
    if (options.bandwidth_mbps <= 0 || n == 0)
        return;
    double cost = (double)n / (options.bandwidth_mbps * 1e6);
    pthread_mutex_lock(&b->lock);
    double t = now_s();
    double start = b->next_free > t - BURST_S ? b->next_free : t - BURST_S;
    b->next_free = start + cost;
    double done = b->next_free;
    pthread_mutex_unlock(&b->lock);
    sleep_until(done);
}

static int full(char *out, const char *path)
{
    if (snprintf(out, PATH_MAX, "%s%s", options.source, path) >= PATH_MAX)
        return -ENAMETOOLONG;
    return 0;
}

#define FULL(var, path)                 \
    char var[PATH_MAX];                 \
    do {                                \
        int e_ = full(var, path);       \
        if (e_)                         \
            return e_;                  \
    } while (0)

static int stats_text(char *buf, size_t size)
{
    return snprintf(buf, size,
                    "latency_ms %d\nbandwidth_mbps %d\nmeta_ops %llu\nreads %llu\nwrites %llu\n"
                    "bytes_read %llu\nbytes_written %llu\nslept_us %llu\n",
                    options.latency_ms, options.bandwidth_mbps,
                    (unsigned long long)n_meta_ops, (unsigned long long)n_reads,
                    (unsigned long long)n_writes, (unsigned long long)bytes_read,
                    (unsigned long long)bytes_written, (unsigned long long)slept_us);
}

static void *dfs_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
    (void)conn;
    cfg->use_ino = 1;
    cfg->entry_timeout = 1.0;
    cfg->attr_timeout = 1.0;
    cfg->negative_timeout = 0;
    return NULL;
}

static int dfs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
    if (strcmp(path, STATS_PATH) == 0) {
        memset(st, 0, sizeof *st);
        st->st_mode = S_IFREG | 0444;
        st->st_nlink = 1;
        st->st_size = 4096;
        return 0;
    }
    int r;
    if (fi) {
        r = fstat(fi->fh, st);
    } else {
        latency();
        FULL(p, path);
        r = lstat(p, st);
    }
    return r == -1 ? -errno : 0;
}

static int dfs_access(const char *path, int mask)
{
    latency();
    FULL(p, path);
    return access(p, mask) == -1 ? -errno : 0;
}

static int dfs_readlink(const char *path, char *buf, size_t size)
{
    latency();
    FULL(p, path);
    ssize_t r = readlink(p, buf, size - 1);
    if (r == -1)
        return -errno;
    buf[r] = '\0';
    return 0;
}

static int dfs_opendir(const char *path, struct fuse_file_info *fi)
{
    latency();
    FULL(p, path);
    DIR *d = opendir(p);
    if (!d)
        return -errno;
    fi->fh = (uint64_t)(uintptr_t)d;
    return 0;
}

static int dfs_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t offset,
                       struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
    (void)path;
    (void)offset;
    (void)flags;
    DIR *d = (DIR *)(uintptr_t)fi->fh;
    rewinddir(d);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        struct stat st;
        memset(&st, 0, sizeof st);
        st.st_ino = de->d_ino;
        st.st_mode = de->d_type << 12;
        if (filler(buf, de->d_name, &st, 0, 0))
            break;
    }
    return 0;
}

static int dfs_releasedir(const char *path, struct fuse_file_info *fi)
{
    (void)path;
    closedir((DIR *)(uintptr_t)fi->fh);
    return 0;
}

static int dfs_mkdir(const char *path, mode_t mode)
{
    latency();
    FULL(p, path);
    return mkdir(p, mode) == -1 ? -errno : 0;
}

static int dfs_unlink(const char *path)
{
    latency();
    FULL(p, path);
    return unlink(p) == -1 ? -errno : 0;
}

static int dfs_rmdir(const char *path)
{
    latency();
    FULL(p, path);
    return rmdir(p) == -1 ? -errno : 0;
}

static int dfs_symlink(const char *from, const char *to)
{
    latency();
    FULL(p, to);
    return symlink(from, p) == -1 ? -errno : 0;
}

static int dfs_rename(const char *from, const char *to, unsigned int flags)
{
    latency();
    FULL(a, from);
    FULL(b, to);
    int r = flags ? renameat2(AT_FDCWD, a, AT_FDCWD, b, flags) : rename(a, b);
    return r == -1 ? -errno : 0;
}

static int dfs_link(const char *from, const char *to)
{
    latency();
    FULL(a, from);
    FULL(b, to);
    return link(a, b) == -1 ? -errno : 0;
}

static int dfs_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
    latency();
    int r;
    if (fi) {
        r = fchmod(fi->fh, mode);
    } else {
        FULL(p, path);
        r = chmod(p, mode);
    }
    return r == -1 ? -errno : 0;
}

static int dfs_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
    latency();
    int r;
    if (fi) {
        r = fchown(fi->fh, uid, gid);
    } else {
        FULL(p, path);
        r = lchown(p, uid, gid);
    }
    return r == -1 ? -errno : 0;
}

static int dfs_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
    latency();
    int r;
    if (fi) {
        r = ftruncate(fi->fh, size);
    } else {
        FULL(p, path);
        r = truncate(p, size);
    }
    return r == -1 ? -errno : 0;
}

static int dfs_utimens(const char *path, const struct timespec ts[2], struct fuse_file_info *fi)
{
    latency();
    int r;
    if (fi) {
        r = futimens(fi->fh, ts);
    } else {
        FULL(p, path);
        r = utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW);
    }
    return r == -1 ? -errno : 0;
}

static int dfs_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
    latency();
    FULL(p, path);
    int fd = open(p, fi->flags, mode);
    if (fd == -1)
        return -errno;
    fi->fh = fd;
    return 0;
}

static int dfs_open(const char *path, struct fuse_file_info *fi)
{
    if (strcmp(path, STATS_PATH) == 0) {
        fi->direct_io = 1;
        fi->fh = (uint64_t)-1;
        return 0;
    }
    latency();
    FULL(p, path);
    int fd = open(p, fi->flags);
    if (fd == -1)
        return -errno;
    fi->fh = fd;
    return 0;
}

static int dfs_read(const char *path, char *buf, size_t size, off_t offset,
                    struct fuse_file_info *fi)
{
    if (fi->fh == (uint64_t)-1 && strcmp(path, STATS_PATH) == 0) {
        char text[1024];
        int n = stats_text(text, sizeof text);
        if (offset >= n)
            return 0;
        size_t len = (size_t)(n - offset) < size ? (size_t)(n - offset) : size;
        memcpy(buf, text + offset, len);
        return (int)len;
    }
    ssize_t r = pread(fi->fh, buf, size, offset);
    if (r == -1)
        return -errno;
    pace(&down, (size_t)r);
    atomic_fetch_add(&n_reads, 1);
    atomic_fetch_add(&bytes_read, (unsigned long long)r);
    return (int)r;
}

static int dfs_write(const char *path, const char *buf, size_t size, off_t offset,
                     struct fuse_file_info *fi)
{
    (void)path;
    pace(&up, size);
    ssize_t r = pwrite(fi->fh, buf, size, offset);
    if (r == -1)
        return -errno;
    atomic_fetch_add(&n_writes, 1);
    atomic_fetch_add(&bytes_written, (unsigned long long)r);
    return (int)r;
}

static int dfs_statfs(const char *path, struct statvfs *st)
{
    (void)path;
    latency();
    return statvfs(options.source, st) == -1 ? -errno : 0;
}

static int dfs_release(const char *path, struct fuse_file_info *fi)
{
    (void)path;
    if (fi->fh != (uint64_t)-1)
        close(fi->fh);
    return 0;
}

static int dfs_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
    (void)path;
    latency();
    int r = datasync ? fdatasync(fi->fh) : fsync(fi->fh);
    return r == -1 ? -errno : 0;
}

static int dfs_fsyncdir(const char *path, int datasync, struct fuse_file_info *fi)
{
    (void)path;
    (void)datasync;
    latency();
    DIR *d = (DIR *)(uintptr_t)fi->fh;
    return fsync(dirfd(d)) == -1 ? -errno : 0;
}

static int dfs_fallocate(const char *path, int mode, off_t offset, off_t length,
                         struct fuse_file_info *fi)
{
    (void)path;
    if (mode)
        return -EOPNOTSUPP;
    return -posix_fallocate(fi->fh, offset, length);
}

static const struct fuse_operations dfs_ops = {
    .init = dfs_init,
    .getattr = dfs_getattr,
    .access = dfs_access,
    .readlink = dfs_readlink,
    .opendir = dfs_opendir,
    .readdir = dfs_readdir,
    .releasedir = dfs_releasedir,
    .mkdir = dfs_mkdir,
    .symlink = dfs_symlink,
    .unlink = dfs_unlink,
    .rmdir = dfs_rmdir,
    .rename = dfs_rename,
    .link = dfs_link,
    .chmod = dfs_chmod,
    .chown = dfs_chown,
    .truncate = dfs_truncate,
    .utimens = dfs_utimens,
    .open = dfs_open,
    .create = dfs_create,
    .read = dfs_read,
    .write = dfs_write,
    .statfs = dfs_statfs,
    .release = dfs_release,
    .fsync = dfs_fsync,
    .fsyncdir = dfs_fsyncdir,
    .fallocate = dfs_fallocate,
};

int main(int argc, char *argv[])
{
    struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
    options.latency_ms = 30;
    options.bandwidth_mbps = 100;
    if (fuse_opt_parse(&args, &options, option_spec, NULL) == -1)
        return 1;
    if (options.show_help || !options.source) {
        fprintf(stderr,
                "usage: %s --source=DIR [--latency-ms=30] [--bandwidth-mbps=100] MOUNTPOINT "
                "[FUSE options]\n",
                argv[0]);
        return options.show_help ? 0 : 2;
    }
    char *real = realpath(options.source, NULL);
    if (!real) {
        perror(options.source);
        return 2;
    }
    options.source = real;
    int r = fuse_main(args.argc, args.argv, &dfs_ops, NULL);
    fuse_opt_free_args(&args);
    return r;
}
