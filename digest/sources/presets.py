"""The queries of the presets: WordPress (its documented table layout,
https://codex.wordpress.org/Database_Description) and the generic one (three
tables or views with digest's own column names, docs/SOURCES.md).

Every query is a SELECT: the connection is read-only at the database anyway. Table
names come from the source file, checked against a strict pattern; values (the
views meta key, the times) are bound, never joined into the text."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from digest.sources.files import Source

# WordPress: a post is withdrawn when it is no longer published or has a password;
# a scheduled post becomes visible at its date (WordPress publishes it without
# touching post_modified), hence the greater of the two as its time. The link is
# the one every permalink setting answers: home/?p=ID.
WP_ARTICLES = """
SELECT p.ID AS id,
       CONCAT((SELECT o.option_value FROM {p}options o WHERE o.option_name = 'home'),
              '/?p=', p.ID) AS url,
       p.post_title AS title,
       NULLIF(p.post_excerpt, '') AS lead,
       (SELECT t.name FROM {p}term_relationships tr
          JOIN {p}term_taxonomy tt ON tt.term_taxonomy_id = tr.term_taxonomy_id
                                  AND tt.taxonomy = 'category'
          JOIN {p}terms t ON t.term_id = tt.term_id
         WHERE tr.object_id = p.ID ORDER BY tt.term_taxonomy_id LIMIT 1) AS section,
       p.post_date_gmt AS published_at,
       GREATEST(p.post_modified_gmt, p.post_date_gmt) AS updated_at,
       (SELECT a.guid FROM {p}postmeta th JOIN {p}posts a ON a.ID = th.meta_value
         WHERE th.post_id = p.ID AND th.meta_key = '_thumbnail_id' LIMIT 1) AS image_url,
       (p.post_status <> 'publish' OR p.post_password <> '') AS withdrawn
  FROM {p}posts p
 WHERE p.post_type = 'post'
   AND GREATEST(p.post_modified_gmt, p.post_date_gmt) >= :since
   AND GREATEST(p.post_modified_gmt, p.post_date_gmt) < :until
 ORDER BY updated_at, p.ID
"""

# Approved comments of posts (not pingbacks); comment_ID is the comment's number.
WP_COMMENTS = """
SELECT c.comment_post_ID AS article_id, c.comment_ID AS number,
       c.comment_author AS author, c.comment_date_gmt AS posted_at,
       c.comment_content AS body, c.comment_karma AS votes
  FROM {p}comments c
 WHERE c.comment_approved = '1' AND c.comment_type IN ('comment', '')
   AND c.comment_date_gmt >= :since AND c.comment_date_gmt < :until
 ORDER BY c.comment_date_gmt, c.comment_ID
"""

WP_SECTIONS = """
SELECT t.name AS title
  FROM {p}terms t JOIN {p}term_taxonomy tt ON tt.term_id = t.term_id
 WHERE tt.taxonomy = 'category' AND t.slug <> 'uncategorized'
 ORDER BY t.name
"""

# The counter plugins keep in post meta changes without post_modified: read on
# every sync for the recent posts.
WP_VIEWS = """
SELECT m.post_id AS article_id, MAX(CAST(m.meta_value AS UNSIGNED)) AS views
  FROM {p}postmeta m JOIN {p}posts p ON p.ID = m.post_id
 WHERE m.meta_key = :views_key AND p.post_type = 'post' AND p.post_date_gmt >= :since
 GROUP BY m.post_id
"""

GENERIC_ARTICLES = """
SELECT * FROM {articles}
 WHERE updated_at >= :since AND updated_at < :until ORDER BY updated_at, id
"""
GENERIC_COMMENTS = """
SELECT * FROM {comments}
 WHERE posted_at >= :since AND posted_at < :until ORDER BY posted_at, article_id, number
"""
GENERIC_SECTIONS = "SELECT * FROM {sections}"
GENERIC_VIEWS = "SELECT id AS article_id, views FROM {articles} WHERE published_at >= :since"


def preset_queries(preset: str | None, source: Source) -> dict[str, str]:
    """The preset's SQL by query name (none without a preset)."""
    if preset == "wordpress":
        p = source.wordpress.table_prefix
        return {
            "articles": WP_ARTICLES.format(p=p),
            "comments": WP_COMMENTS.format(p=p),
            "sections": WP_SECTIONS.format(p=p),
            "views": WP_VIEWS.format(p=p),
        }
    if preset == "generic":
        tables = source.generic
        queries = {
            "articles": GENERIC_ARTICLES.format(articles=tables.articles),
            "comments": GENERIC_COMMENTS.format(comments=tables.comments),
            "views": GENERIC_VIEWS.format(articles=tables.articles),
        }
        if tables.sections:
            queries["sections"] = GENERIC_SECTIONS.format(sections=tables.sections)
        return queries
    return {}
