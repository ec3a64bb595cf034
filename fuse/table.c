/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The image table: which backing file a FUSE nodeid names.
 *
 * Design notes.  Two RCU lock-free hash tables (liburcu's cds_lfht, the
 * "bp" flavour because libfuse creates the reader threads) index the same
 * entries: by nodeid, for every request, and by backing inode, so that a
 * second lookup of a file (or of another name of it) finds its node.
 * Nodeids come from a 64-bit counter and are never reused, so the
 * generation is always 0.  Readers take no lock; writers (lookup, forget)
 * hold table_lock, which also protects each node's nlookup.  A node whose
 * nlookup drops to 0 is removed from both tables and freed after a grace
 * period (call_rcu): a reader walking a hash chain may still be on it.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <urcu-bp.h>
#include <urcu/rculfhash.h>

#include "pivot.h"
#include "table.h"
#include "target.h"

/*
 * A key of the inode table.  A node has one per backing inode it has had
 * (a mirror pivot adds the target's and unlinks the old one); they are
 * freed with the node, after a grace period, since a removed lfht node
 * cannot be reused before one.
 */
struct ino_link {
	struct cds_lfht_node ht;
	struct tentry *e;
	dev_t dev;
	ino_t ino;
	bool in_table;
	struct ino_link *next;
};

struct tentry {
	struct vdfs_node node;
	struct cds_lfht_node by_id;
	struct ino_link *links;        /* table lock */
	struct rcu_head rcu;
};

static struct cds_lfht *tab_id, *tab_ino;
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_uint_fast64_t next_nodeid = FUSE_ROOT_ID + 1;

/*
 * The first or next entry of the nodeid table, or NULL.  Read side.
 * (cds_lfht_for_each_entry computes container_of(NULL) at the end, which
 * UBSan rightly reports.)
 */
static struct tentry *iter_entry(struct cds_lfht_iter *it)
{
	struct cds_lfht_node *ht = cds_lfht_iter_get_node(it);

	return ht ? caa_container_of(ht, struct tentry, by_id) : NULL;
}

static unsigned long hash_u64(uint64_t v)
{
	v ^= v >> 33;
	v *= 0xff51afd7ed558ccdull;
	v ^= v >> 33;
	return (unsigned long)v;
}

static unsigned long hash_inode(dev_t dev, ino_t ino)
{
	return hash_u64((uint64_t)ino ^ ((uint64_t)dev << 40));
}

static int match_id(struct cds_lfht_node *ht, const void *key)
{
	const struct tentry *e = caa_container_of(ht, struct tentry, by_id);

	return e->node.nodeid == *(const uint64_t *)key;
}

struct inode_key {
	dev_t dev;
	ino_t ino;
};

static int match_inode(struct cds_lfht_node *ht, const void *key)
{
	const struct ino_link *l = caa_container_of(ht, struct ino_link, ht);
	const struct inode_key *k = key;

	return l->dev == k->dev && l->ino == k->ino;
}

/* Table lock held; inside a read-side section. */
static void links_del(struct tentry *e)
{
	for (struct ino_link *l = e->links; l; l = l->next) {
		if (l->in_table)
			cds_lfht_del(tab_ino, &l->ht);
		l->in_table = false;
	}
}

/* Table lock held; inside a read-side section. */
static int link_add(struct tentry *e, dev_t dev, ino_t ino)
{
	struct ino_link *l = calloc(1, sizeof(*l));

	if (!l)
		return -ENOMEM;
	cds_lfht_node_init(&l->ht);
	l->e = e;
	l->dev = dev;
	l->ino = ino;
	l->in_table = true;
	l->next = e->links;
	e->links = l;
	cds_lfht_add(tab_ino, hash_inode(dev, ino), &l->ht);
	return 0;
}

int vdfs_table_init(void)
{
	tab_id = cds_lfht_new(64, 64, 0, CDS_LFHT_AUTO_RESIZE, NULL);
	tab_ino = cds_lfht_new(64, 64, 0, CDS_LFHT_AUTO_RESIZE, NULL);
	if (!tab_id || !tab_ino) {
		if (tab_id)
			cds_lfht_destroy(tab_id, NULL);
		if (tab_ino)
			cds_lfht_destroy(tab_ino, NULL);
		tab_id = tab_ino = NULL;
		return -ENOMEM;
	}
	return 0;
}

static void tentry_free(struct tentry *e)
{
	struct ino_link *l;

	while ((l = e->links)) {
		e->links = l->next;
		free(l);
	}
	if (e->node.fd >= 0)
		close(e->node.fd);
	pthread_mutex_destroy(&e->node.lock);
	free(e->node.name);
	free(e->node.backing);
	free(e);
}

static void tentry_free_rcu(struct rcu_head *head)
{
	tentry_free(caa_container_of(head, struct tentry, rcu));
}

void vdfs_table_destroy(void)
{
	struct cds_lfht_iter it;
	struct tentry *e;

	if (!tab_id)
		return;
	pthread_mutex_lock(&table_lock);
	rcu_read_lock();
	for (cds_lfht_first(tab_id, &it); (e = iter_entry(&it));
	     cds_lfht_next(tab_id, &it)) {
		cds_lfht_del(tab_id, &e->by_id);
		links_del(e);
		call_rcu(&e->rcu, tentry_free_rcu);
	}
	rcu_read_unlock();
	pthread_mutex_unlock(&table_lock);
	rcu_barrier();
	cds_lfht_destroy(tab_id, NULL);
	cds_lfht_destroy(tab_ino, NULL);
	tab_id = tab_ino = NULL;
}

struct vdfs_node *vdfs_table_get(uint64_t nodeid)
{
	struct cds_lfht_iter it;
	struct cds_lfht_node *ht;
	struct vdfs_node *n = NULL;

	rcu_read_lock();
	cds_lfht_lookup(tab_id, hash_u64(nodeid), match_id, &nodeid, &it);
	ht = cds_lfht_iter_get_node(&it);
	if (ht)
		n = &caa_container_of(ht, struct tentry, by_id)->node;
	rcu_read_unlock();
	return n;
}

static struct tentry *find_inode_rcu(dev_t dev, ino_t ino)
{
	struct inode_key k = { .dev = dev, .ino = ino };
	struct cds_lfht_iter it;
	struct cds_lfht_node *ht;

	cds_lfht_lookup(tab_ino, hash_inode(dev, ino), match_inode, &k, &it);
	ht = cds_lfht_iter_get_node(&it);
	return ht ? caa_container_of(ht, struct ino_link, ht)->e : NULL;
}

struct vdfs_node *vdfs_table_find_inode(dev_t dev, ino_t ino)
{
	struct tentry *e;

	rcu_read_lock();
	e = find_inode_rcu(dev, ino);
	rcu_read_unlock();
	return e ? &e->node : NULL;
}

bool vdfs_name_visible(const char *name)
{
	/* Dotfiles are not images; ".vdiskfs/" holds the daemon's state. */
	return name[0] != '\0' && name[0] != '.' && !strchr(name, '/');
}

/* backing is taken over. */
static struct tentry *tentry_new(int fd, const struct stat *st,
				 const char *name, char *backing)
{
	struct tentry *e = calloc(1, sizeof(*e));

	if (!e)
		return NULL;
	atomic_init(&e->node.fd, fd);
	e->node.dev = st->st_dev;
	e->node.ino = st->st_ino;
	e->node.name = strdup(name);
	if (!e->node.name) {
		free(e);
		return NULL;
	}
	e->node.backing = backing;
	pthread_mutex_init(&e->node.lock, NULL);
	atomic_init(&e->node.pending, 0);
	atomic_init(&e->node.pivoted, false);
	atomic_init(&e->node.job_live, false);
	cds_lfht_node_init(&e->by_id);
	return e;
}

/*
 * Open what name is served from: IMAGE_DIR/name, or the target a mirror
 * pivot recorded for it (*pivoted says which).  Table lock held, so a
 * pivot is seen whole.
 */
static int open_backing(int dir_fd, const char *name, char **backing,
			bool *pivoted)
{
	char *target = NULL;
	int fd, ret;

	ret = vdfs_g.pivots ? vdfs_pivots_get(vdfs_g.pivots, name, &target) :
	      -ENOENT;
	if (ret == 0) {
		fd = vdfs_target_reopen(vdfs_g.mirror_dir_fd,
					vdfs_g.cfg.mirror_dir, target);
		if (fd < 0) {
			ret = fd;
			/* Records are absolute paths: -EINVAL means this. */
			log_error("%s: its mirror target %s: %s", name, target,
				  ret == -EINVAL ? "not a regular file" :
				  strerror(-ret));
			free(target);
			/* Never fall back to the old source silently. */
			return ret == -ENOENT || ret == -EINVAL ? -EIO : ret;
		}
		*backing = target;
		*pivoted = true;
		return fd;
	}
	if (ret != -ENOENT)
		return ret;
	fd = openat(dir_fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ELOOP ? -ENOENT : -errno;
	if (asprintf(backing, "%s/%s", vdfs_g.cfg.image_dir, name) < 0) {
		close(fd);
		return -ENOMEM;
	}
	*pivoted = false;
	return fd;
}

int vdfs_table_lookup(int dir_fd, const char *name, struct vdfs_node **out)
{
	char *backing = NULL;
	bool pivoted = false;
	struct tentry *e;
	struct stat st;
	int fd, ret;

	if (!vdfs_name_visible(name))
		return -ENOENT;
	pthread_mutex_lock(&table_lock);
	fd = open_backing(dir_fd, name, &backing, &pivoted);
	if (fd < 0) {
		pthread_mutex_unlock(&table_lock);
		return fd;
	}
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		goto out_close;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = -ENOENT;
		goto out_close;
	}

	rcu_read_lock();
	e = find_inode_rcu(st.st_dev, st.st_ino);
	rcu_read_unlock();
	if (e) {
		e->node.nlookup++;
		pthread_mutex_unlock(&table_lock);
		close(fd);
		free(backing);
		*out = &e->node;
		return 0;
	}
	e = tentry_new(fd, &st, name, backing);
	if (!e) {
		ret = -ENOMEM;
		goto out_close;
	}
	/* Served from a target that an earlier run switched to. */
	atomic_store(&e->node.pivoted, pivoted);
	e->node.nodeid = atomic_fetch_add(&next_nodeid, 1);
	e->node.nlookup = 1;
	rcu_read_lock();
	ret = link_add(e, st.st_dev, st.st_ino);
	if (ret == 0)
		cds_lfht_add(tab_id, hash_u64(e->node.nodeid), &e->by_id);
	rcu_read_unlock();
	pthread_mutex_unlock(&table_lock);
	if (ret < 0) {
		tentry_free(e);
		return ret;
	}
	*out = &e->node;
	return 0;

out_close:
	pthread_mutex_unlock(&table_lock);
	close(fd);
	free(backing);
	return ret;
}

int vdfs_table_pivot(struct vdfs_node *n, const char *target, int fd,
		     const struct stat *st, int *old_fd, char **old_backing)
{
	struct tentry *e = caa_container_of(n, struct tentry, node);
	char *backing = strdup(target);
	int ret;

	if (!backing)
		return -ENOMEM;
	pthread_mutex_lock(&table_lock);
	ret = vdfs_pivots_record(vdfs_g.pivots, vdfs_g.dir_fd, n->name,
				 target);
	if (ret < 0)
		goto out;
	rcu_read_lock();
	links_del(e);
	ret = link_add(e, st->st_dev, st->st_ino);
	rcu_read_unlock();
	/* Out of memory for the key only costs a second node on a later
	 * lookup by the target's inode; the record is what counts. */
	ret = 0;
	*old_fd = atomic_exchange(&n->fd, fd);
	*old_backing = n->backing;
	n->backing = backing;
	backing = NULL;
out:
	pthread_mutex_unlock(&table_lock);
	free(backing);
	return ret;
}

void vdfs_table_forget(uint64_t nodeid, uint64_t nlookup)
{
	struct vdfs_node *n = vdfs_table_get(nodeid);
	struct tentry *e;
	bool busy;

	if (!n)
		return;
	e = caa_container_of(n, struct tentry, node);
	pthread_mutex_lock(&table_lock);
	n->nlookup = nlookup >= n->nlookup ? 0 : n->nlookup - nlookup;
	pthread_mutex_lock(&n->lock);
	busy = n->open_count > 0 || atomic_load(&n->job_live);
	pthread_mutex_unlock(&n->lock);
	/* An open node keeps an inode reference in the kernel, so it never
	 * gets here with handles; if it did, leaking beats freeing. */
	if (n->nlookup == 0 && !busy) {
		rcu_read_lock();
		cds_lfht_del(tab_id, &e->by_id);
		links_del(e);
		rcu_read_unlock();
	} else {
		e = NULL;
	}
	pthread_mutex_unlock(&table_lock);
	if (!e)
		return;
	/* Out of the table: nobody can open it again.  Close its image (a
	 * flush, so not under the table lock), then free after readers. */
	vdfs_node_release_image(n);
	call_rcu(&e->rcu, tentry_free_rcu);
}

void vdfs_table_for_each(void (*fn)(struct vdfs_node *n, void *opaque),
			 void *opaque)
{
	struct cds_lfht_iter it;
	struct vdfs_node **v = NULL, **nv;
	size_t nr = 0, cap = 0;
	struct tentry *e;

	/* Shutdown only: no FORGET can come any more, so the nodes stay;
	 * collect them first so that fn runs outside the read-side section
	 * (it may wait for a grace period). */
	pthread_mutex_lock(&table_lock);
	rcu_read_lock();
	for (cds_lfht_first(tab_id, &it); (e = iter_entry(&it));
	     cds_lfht_next(tab_id, &it)) {
		if (nr == cap) {
			cap = cap ? 2 * cap : 64;
			nv = realloc(v, cap * sizeof(*v));
			if (!nv)
				break;
			v = nv;
		}
		v[nr++] = &e->node;
	}
	rcu_read_unlock();
	pthread_mutex_unlock(&table_lock);
	for (size_t i = 0; i < nr; i++)
		fn(v[i], opaque);
	free(v);
}
