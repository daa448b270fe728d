"""A WordPress-layout database, written: the demo's site (`make demo-site`), the
tests' and the benchmark's. Never a real site: digest only reads those
(``store.site``).

The tables are WordPress's own, as its documentation and
wp-admin/includes/schema.php define them (the columns a source reads and those
around them), so the preset's queries meet the layout a real site has."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

_TABLE = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"
SCHEMA = (
    """CREATE TABLE {p}options (
  option_id bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  option_name varchar(191) NOT NULL DEFAULT '',
  option_value longtext NOT NULL,
  autoload varchar(20) NOT NULL DEFAULT 'yes',
  PRIMARY KEY (option_id), UNIQUE KEY option_name (option_name)) {t}""",
    """CREATE TABLE {p}posts (
  ID bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  post_author bigint(20) unsigned NOT NULL DEFAULT 0,
  post_date datetime NOT NULL DEFAULT '0000-00-00 00:00:00',
  post_date_gmt datetime NOT NULL DEFAULT '0000-00-00 00:00:00',
  post_content longtext NOT NULL, post_title text NOT NULL, post_excerpt text NOT NULL,
  post_status varchar(20) NOT NULL DEFAULT 'publish',
  comment_status varchar(20) NOT NULL DEFAULT 'open',
  ping_status varchar(20) NOT NULL DEFAULT 'open',
  post_password varchar(255) NOT NULL DEFAULT '',
  post_name varchar(200) NOT NULL DEFAULT '',
  to_ping text NOT NULL, pinged text NOT NULL,
  post_modified datetime NOT NULL DEFAULT '0000-00-00 00:00:00',
  post_modified_gmt datetime NOT NULL DEFAULT '0000-00-00 00:00:00',
  post_content_filtered longtext NOT NULL,
  post_parent bigint(20) unsigned NOT NULL DEFAULT 0,
  guid varchar(255) NOT NULL DEFAULT '',
  menu_order int(11) NOT NULL DEFAULT 0,
  post_type varchar(20) NOT NULL DEFAULT 'post',
  post_mime_type varchar(100) NOT NULL DEFAULT '',
  comment_count bigint(20) NOT NULL DEFAULT 0,
  PRIMARY KEY (ID), KEY post_name (post_name(191)),
  KEY type_status_date (post_type, post_status, post_date, ID),
  KEY post_parent (post_parent), KEY post_author (post_author)) {t}""",
    """CREATE TABLE {p}postmeta (
  meta_id bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  post_id bigint(20) unsigned NOT NULL DEFAULT 0,
  meta_key varchar(255) DEFAULT NULL, meta_value longtext,
  PRIMARY KEY (meta_id), KEY post_id (post_id), KEY meta_key (meta_key(191))) {t}""",
    """CREATE TABLE {p}terms (
  term_id bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  name varchar(200) NOT NULL DEFAULT '', slug varchar(200) NOT NULL DEFAULT '',
  term_group bigint(10) NOT NULL DEFAULT 0,
  PRIMARY KEY (term_id), KEY slug (slug(191)), KEY name (name(191))) {t}""",
    """CREATE TABLE {p}term_taxonomy (
  term_taxonomy_id bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  term_id bigint(20) unsigned NOT NULL DEFAULT 0,
  taxonomy varchar(32) NOT NULL DEFAULT '', description longtext NOT NULL,
  parent bigint(20) unsigned NOT NULL DEFAULT 0, count bigint(20) NOT NULL DEFAULT 0,
  PRIMARY KEY (term_taxonomy_id), UNIQUE KEY term_id_taxonomy (term_id, taxonomy),
  KEY taxonomy (taxonomy)) {t}""",
    """CREATE TABLE {p}term_relationships (
  object_id bigint(20) unsigned NOT NULL DEFAULT 0,
  term_taxonomy_id bigint(20) unsigned NOT NULL DEFAULT 0,
  term_order int(11) NOT NULL DEFAULT 0,
  PRIMARY KEY (object_id, term_taxonomy_id), KEY term_taxonomy_id (term_taxonomy_id)) {t}""",
    """CREATE TABLE {p}comments (
  comment_ID bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  comment_post_ID bigint(20) unsigned NOT NULL DEFAULT 0,
  comment_author tinytext NOT NULL,
  comment_author_email varchar(100) NOT NULL DEFAULT '',
  comment_author_url varchar(200) NOT NULL DEFAULT '',
  comment_author_IP varchar(100) NOT NULL DEFAULT '',
  comment_date datetime NOT NULL DEFAULT '0000-00-00 00:00:00',
  comment_date_gmt datetime NOT NULL DEFAULT '0000-00-00 00:00:00',
  comment_content text NOT NULL, comment_karma int(11) NOT NULL DEFAULT 0,
  comment_approved varchar(20) NOT NULL DEFAULT '1',
  comment_agent varchar(255) NOT NULL DEFAULT '',
  comment_type varchar(20) NOT NULL DEFAULT 'comment',
  comment_parent bigint(20) unsigned NOT NULL DEFAULT 0,
  user_id bigint(20) unsigned NOT NULL DEFAULT 0,
  PRIMARY KEY (comment_ID), KEY comment_post_ID (comment_post_ID),
  KEY comment_approved_date_gmt (comment_approved, comment_date_gmt),
  KEY comment_date_gmt (comment_date_gmt)) {t}""",
)


def wp_time(at: datetime) -> datetime:
    """WordPress's ``*_gmt`` columns: naive UTC."""
    return at.astimezone(UTC).replace(tzinfo=None)


class WordPressSite:
    """Writes a WordPress-layout database at ``url`` (MariaDB/MySQL)."""

    def __init__(self, url: str, prefix: str = "wp_") -> None:
        parsed = make_url(url).set(drivername="mysql+pymysql")
        self.engine: Engine = create_engine(parsed.update_query_dict({"charset": "utf8mb4"}))
        self.p = prefix

    def close(self) -> None:
        self.engine.dispose()

    def execute(self, sql: str, params: dict[str, Any] | list[dict[str, Any]] | None = None) -> Any:
        """One statement (``{p}`` is the table prefix), committed."""
        with self.engine.begin() as conn:
            result = conn.execute(text(sql.replace("{p}", self.p)), params or {})
            return result.rowcount if isinstance(params, list) else result.lastrowid

    def scalar(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(text(sql.replace("{p}", self.p)), params or {}).scalar()

    def create(self, home: str) -> None:
        for statement in SCHEMA:
            self.execute(statement.format(p="{p}", t=_TABLE))
        self.execute(
            "INSERT INTO {p}options (option_name, option_value) VALUES ('home', :home)",
            {"home": home.rstrip("/")},
        )

    def add_category(self, name: str, slug: str) -> int:
        term = self.execute(
            "INSERT INTO {p}terms (name, slug) VALUES (:name, :slug)", {"name": name, "slug": slug}
        )
        return int(
            self.execute(
                "INSERT INTO {p}term_taxonomy (term_id, taxonomy, description) "
                "VALUES (:term, 'category', '')",
                {"term": term},
            )
        )

    def add_posts(self, posts: Iterable[dict[str, Any]]) -> None:
        """Posts with their ID given: ``ID, title, excerpt, status, date, modified``
        (aware), ``category`` (a term_taxonomy_id or None), ``views`` (or None)."""
        rows, links, meta = [], [], []
        for post in posts:
            rows.append(
                {
                    "ID": post["ID"], "title": post["title"], "excerpt": post.get("excerpt", ""),
                    "status": post.get("status", "publish"), "date": wp_time(post["date"]),
                    "modified": wp_time(post.get("modified", post["date"])),
                    "name": f"post-{post['ID']}",
                }
            )  # fmt: skip
            if post.get("category"):
                links.append({"post": post["ID"], "tt": post["category"]})
            if post.get("views") is not None:
                meta.append({"post": post["ID"], "views": str(post["views"])})
        self.execute(
            "INSERT INTO {p}posts (ID, post_date, post_date_gmt, post_content, post_title, "
            "post_excerpt, post_status, post_name, to_ping, pinged, post_modified, "
            "post_modified_gmt, post_content_filtered, post_type) VALUES (:ID, :date, :date, "
            "'', :title, :excerpt, :status, :name, '', '', :modified, :modified, '', 'post')",
            rows,
        )
        if links:
            self.execute(
                "INSERT INTO {p}term_relationships (object_id, term_taxonomy_id) "
                "VALUES (:post, :tt)",
                links,
            )
        if meta:
            self.execute(
                "INSERT INTO {p}postmeta (post_id, meta_key, meta_value) "
                "VALUES (:post, 'post_views_count', :views)",
                meta,
            )

    def add_comments(self, comments: Iterable[dict[str, Any]]) -> None:
        """``post, author, date`` (aware), ``content``, ``karma``, ``approved``."""
        rows = [
            {
                "post": c["post"], "author": c.get("author") or "", "date": wp_time(c["date"]),
                "content": c.get("content", ""), "karma": c.get("karma", 0),
                "approved": c.get("approved", "1"),
            }
            for c in comments
        ]  # fmt: skip
        if rows:
            self.execute(
                "INSERT INTO {p}comments (comment_post_ID, comment_author, comment_date, "
                "comment_date_gmt, comment_content, comment_karma, comment_approved) "
                "VALUES (:post, :author, :date, :date, :content, :karma, :approved)",
                rows,
            )
