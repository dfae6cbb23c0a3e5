"""The retrieval SQL: dense (pgvector HNSW) and full-text candidates fused by a weighted sum of their scores.

Everything happens in one statement so that the permission filter (`collection_id = ANY(...)`) and the
live-generation filter sit inside each candidate scan, never after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from django.conf import settings
from django.db import connections, transaction

from ingest.models import Chunk, Document
from search.models import LexemeFrequency

Mode = Literal["keyword", "dense", "hybrid"]
MODES: tuple[Mode, ...] = ("keyword", "dense", "hybrid")
# The vector slots of a chunk (retrievers.models.SLOT_COLUMNS); the active retriever says which one is read.
EMBEDDING_COLUMNS = ("embedding", "embedding_b")

# Hybrid fusion is a convex combination of the two scores, each normalised over its own candidates:
# similarity min-max over the dense candidates, the full-text score divided by the best one (its floor is
# 0). Score fusion keeps how far apart candidates are, which rank fusion (RRF) throws away; with one
# ranker much weaker than the other, RRF's votes let the weak one's noise in (Bruch, Gai & Ingber, "An
# Analysis of Fusion Functions for Hybrid Retrieval", TOIS 2023). The weight of the dense side is
# Weaviate's default hybrid alpha, not fitted here; docs/retrieval.md has the evaluation of both fusions.
DEFAULT_DENSE_WEIGHT = 0.75
# Each retriever contributes this many candidates (at least k) to the fusion.
DEFAULT_CANDIDATES = 50
# The HNSW candidate list; >= the candidates asked for. With iterative scans a selective filter makes the
# scan continue past it rather than return fewer rows.
DEFAULT_EF_SEARCH = 200
# ts_rank normalisation 1: divide by 1 + log(chunk length), a mild length normalisation (chunks are
# already of bounded length).
TS_RANK_NORMALIZATION = 1
# Lexemes in more than this fraction of chunks do not make a chunk a candidate on their own.
COMMON_LEXEME_FREQUENCY = 0.1
# Full text scores only chunks that could score well (see _keyword_cte): those holding one of the question's
# rarest lexemes, taken rarest first while together they are held by at most this many chunks per candidate
# wanted, ...
KEYWORD_ROWS_PER_CANDIDATE = 10
# ... or two of its next this many uncommon lexemes (two medium words can outscore one rare word).
KEYWORD_PAIRED_LEXEMES = 3
# At most this many chunks per candidate are scored, bounding the work for questions of common words only.
KEYWORD_MAX_ROWS_PER_CANDIDATE = 20
# A search of at least this share of all collections is broad: its keyword scans check the permission on the
# rows the full-text index found instead of ANDing with the collection index (_live_chunk_filter). Measured at
# 100,000 chunks in 10 collections (docs/retrieval.md, "Searches of some collections"): reading 3 of 10 the
# AND is faster by 3 ms, reading all 10 the check is faster by 4 ms, so the costs cross near 0.6 of the
# rows; with more chunks the collection bitmap grows while the visits it saves stay bounded by the keyword
# budget, which moves the crossing lower, so half. Collections are counted, not their chunks, which assumes
# collections of comparable size; a wrong guess costs milliseconds, never a different result.
BROAD_SEARCH_SHARE = 0.5


@dataclass(frozen=True)
class RetrievedChunk:
    chunk_id: int
    document_id: int
    document_title: str
    collection_id: int
    text: str
    heading_path: str
    page: int | None
    char_start: int
    char_end: int
    score: float
    dense_rank: int | None
    keyword_rank: int | None


def vector_literal(embedding: Sequence[float]) -> str:
    return "[" + ",".join(repr(float(value)) for value in embedding) + "]"


def _live_chunk_filter(alias: str, *, broad: bool = False) -> str:
    """The permission and live-generation filter of a full-text candidate scan over chunk `alias`.

    A scalar subquery keeps the generation check a filter of the GIN bitmap scan itself, so stale and
    unreadable rows are skipped instead of returned (the dense scan joins instead: see _dense_cte).

    `broad` (the asker reads most collections, see BROAD_SEARCH_SHARE) writes the permission filter as
    `collection_id + 0`, which no index can serve, so that it is checked on the rows the full-text bitmap
    found. Otherwise the planner may AND that bitmap with a bitmap scan of the collection index, which then
    holds nearly every row of the table (3 ms per scan at 100,000 chunks, and the keyword side makes up to
    three) to save heap visits that _keyword_cte's budget already keeps to about a thousand. For a narrow
    search the AND is the better plan (it skips most of those visits for the price of a small bitmap), so
    the filter keeps its index there. The rows returned are the same either way.
    """
    column = f"({alias}.collection_id + 0)" if broad else f"{alias}.collection_id"
    return f"""
        {column} = ANY(%(collection_ids)s)
        AND {alias}.generation = (
            SELECT d.generation FROM {Document._meta.db_table} d WHERE d.id = {alias}.document_id
        )"""


def _document_aware_distance(alias: str, column: str, own: str) -> str:
    """The distance of chunk `alias` blended with its document opening's: the mean of the two.

    A passage in a document about the question then outranks one that only lies near it in a document about
    something else, and a long document no longer wins by having more chunks to try: passage and document
    evidence combined, as in Callan ("Passage-level evidence in document retrieval", SIGIR 1994) and Dai &
    Callan's FirstP (SIGIR 2019). The document's evidence is its opening, the chunk whose vector ingestion
    already made and that carries its title or first lines; the two are weighed equally, as neither is
    known to be the better evidence (docs/retrieval.md has the variants measured).

    `own` is the chunk's own distance. The opening is the chunk of ordinal 0 of the same generation (an
    index lookup on chunk_unique_position); the opening itself, or a chunk whose opening has no vector in
    this slot yet, keeps its own distance.
    """
    return f"""({own} + COALESCE((
            SELECT o.{column} <=> %(embedding)s::vector FROM {Chunk._meta.db_table} o
            WHERE o.document_id = {alias}.document_id AND o.generation = {alias}.generation AND o.ordinal = 0
        ), {own})) / 2"""


def _dense_cte(column: str) -> str:
    # The HNSW scan finds the chunks nearest the question; each is then scored with its document's opening.
    # relaxed_order may return rows slightly out of order: re-rank the materialised candidates exactly.
    # The live generation is a join, not the scalar subquery of the keyword scans: the planner estimates
    # `generation = (subquery)` at 0.5 % of rows, so when the asker reads only some collections it judged
    # the index scan would have to walk far for 50 rows and chose an exact scan of every readable row and
    # a sort instead (40 ms for 1 of 10 collections at 100,000 chunks, 100 ms for 3 of 10). Joined, the
    # filter is estimated as what it is (nearly every chunk is live) and the HNSW scan stays in use, the
    # join being a nested loop on the document's primary key per candidate.
    table = Chunk._meta.db_table
    documents = Document._meta.db_table
    return f"""
    dense AS MATERIALIZED (
        SELECT id, distance, row_number() OVER (ORDER BY distance, id) AS rank
        FROM (
            SELECT nearest.id, {_document_aware_distance("nearest", column, "nearest.distance")} AS distance
            FROM (
                SELECT c.id, c.document_id, c.generation, c.{column} <=> %(embedding)s::vector AS distance
                FROM {table} c
                JOIN {documents} d ON d.id = c.document_id AND d.generation = c.generation
                WHERE c.collection_id = ANY(%(collection_ids)s) AND c.{column} IS NOT NULL
                ORDER BY c.{column} <=> %(embedding)s::vector
                LIMIT %(candidates)s
            ) nearest
        ) blended
    )"""


def _keyword_cte(*, broad: bool = False) -> str:
    """Full-text candidates scored like BM25: per-lexeme ts_rank weighted by the lexeme's IDF.

    ts_rank and ts_rank_cd know nothing of how common a word is, so on long natural-language questions
    "python" or "use" outweigh the one rare word that matters. Document frequencies come from
    `LexemeFrequency` (exact, kept by triggers), summed over the collections searched, so that another
    collection's words move neither the weights nor which chunks are candidates; a lexeme no chunk of them
    holds is dropped. Every lexeme of the question adds to the score, but scoring costs a heap visit per
    chunk, so only chunks that could score well are scored (as in Elasticsearch's common-terms query and
    MaxScore): those holding one of the rarest lexemes (rarest first while together they are held by at
    most KEYWORD_ROWS_PER_CANDIDATE chunks per candidate wanted; the rarest always) or two of the next
    KEYWORD_PAIRED_LEXEMES. Lexemes in more than COMMON_LEXEME_FREQUENCY of all chunks only add to the
    score. A short list is filled from the other uncommon lexemes, an empty one from every lexeme. At most
    KEYWORD_MAX_ROWS_PER_CANDIDATE chunks per candidate are scored, those holding a rare lexeme before
    those holding a pair; when even the rarest lexeme is held by more, a chunk must hold the two rarest.
    """
    table = Chunk._meta.db_table
    frequencies = LexemeFrequency._meta.db_table
    budget = f"{KEYWORD_ROWS_PER_CANDIDATE} * %(candidates)s"
    most = f"{KEYWORD_MAX_ROWS_PER_CANDIDATE} * %(candidates)s"
    all_chunks = LexemeFrequency.ALL_CHUNKS
    score = f"sum(lexemes.idf * ts_rank(matching.search_vector, lexemes.query, {TS_RANK_NORMALIZATION}))"
    return rf"""
    lexemes AS MATERIALIZED (
        SELECT query, chunks, ln(1 + (total - chunks + 0.5) / (chunks + 0.5)) AS idf, position, common,
               position = 1 OR (NOT common AND chunks_through <= {budget}) AS alone
        FROM (
            SELECT query, chunks, total,
                   row_number() OVER rarest_first AS position,
                   sum(chunks) OVER rarest_first AS chunks_through,
                   chunks > {COMMON_LEXEME_FREQUENCY} * total AS common
            FROM (
                SELECT
                    ('''' || replace(replace(f.lexeme, '\', '\\'), '''', '''''') || '''')::tsquery AS query,
                    f.lexeme, f.chunks::float8 AS chunks,
                    (
                        SELECT sum(a.chunks) FROM {frequencies} a
                        WHERE a.lexeme = '{all_chunks}' AND a.collection_id = ANY(%(collection_ids)s)
                    )::float8 AS total
                FROM (
                    -- One index probe per lexeme of the question, as a join: written as
                    -- `f.lexeme = ANY(...)` the same sums made every search about 5 ms slower.
                    SELECT lexeme, sum(f.chunks) AS chunks
                    FROM unnest(tsvector_to_array(to_tsvector('english', %(query)s))) AS lexeme
                    JOIN {frequencies} f USING (lexeme)
                    WHERE f.collection_id = ANY(%(collection_ids)s)
                    GROUP BY lexeme
                ) f
                WHERE f.chunks > 0
            ) known
            WINDOW rarest_first AS (ORDER BY chunks, lexeme)
        ) counted
    ),
    paired AS MATERIALIZED (
        SELECT query, position FROM lexemes WHERE NOT alone AND NOT common
        ORDER BY position LIMIT {KEYWORD_PAIRED_LEXEMES}
    ),
    tsq AS MATERIALIZED (
        SELECT
            CASE WHEN min(chunks) > {most} THEN string_agg(query::text, ' & ') FILTER (WHERE position <= 2)
            ELSE string_agg(query::text, ' | ') FILTER (WHERE alone) END::tsquery AS single,
            (
                SELECT string_agg('(' || a.query::text || ' & ' || b.query::text || ')', ' | ')
                FROM paired a JOIN paired b ON a.position < b.position
            )::tsquery AS pairs,
            CASE WHEN min(chunks) <= {most} THEN
                string_agg(query::text, ' | ') FILTER (WHERE NOT alone AND NOT common)
            END::tsquery AS uncommon_rest,
            string_agg(query::text, ' | ') FILTER (WHERE NOT alone)::tsquery AS rest
        FROM lexemes
    ),
    selected_alone AS MATERIALIZED (
        SELECT c.id, c.search_vector
        FROM {table} c, tsq
        WHERE c.search_vector @@ tsq.single AND {_live_chunk_filter("c", broad=broad)}
        LIMIT {most}
    ),
    selected AS MATERIALIZED (
        SELECT id, search_vector FROM selected_alone
        UNION ALL (
            SELECT c.id, c.search_vector
            FROM {table} c, tsq
            WHERE c.search_vector @@ tsq.pairs AND NOT c.search_vector @@ tsq.single
                AND {_live_chunk_filter("c", broad=broad)}
            LIMIT greatest({most} - (SELECT count(*) FROM selected_alone), 0)
        )
    ),
    filling AS MATERIALIZED (
        SELECT tsq.single || COALESCE(tsq.pairs, tsq.single) AS selecting, CASE
            WHEN NOT EXISTS (SELECT FROM selected) THEN tsq.rest
            WHEN (SELECT count(*) FROM selected) < %(candidates)s THEN tsq.uncommon_rest
        END AS query
        FROM tsq
    ),
    keyword AS MATERIALIZED (
        SELECT id, score, row_number() OVER (ORDER BY score DESC, id) AS rank
        FROM (
            SELECT matching.id, (SELECT {score} FROM lexemes) AS score
            FROM (
                SELECT id, search_vector FROM selected
                UNION ALL (
                    SELECT c.id, c.search_vector
                    FROM {table} c, filling
                    WHERE c.search_vector @@ filling.query AND NOT c.search_vector @@ filling.selecting
                        AND {_live_chunk_filter("c", broad=broad)}
                    LIMIT {most}
                )
            ) matching
            ORDER BY score DESC, matching.id
            LIMIT %(candidates)s
        ) scored
    )"""


def _ranked_cte(mode: Mode, column: str) -> str:
    if mode == "dense":
        return """
    ranked AS (
        SELECT id, rank AS dense_rank, NULL::bigint AS keyword_rank, 1 - distance AS score
        FROM dense ORDER BY rank LIMIT %(k)s
    )"""
    if mode == "keyword":
        return """
    ranked AS (
        SELECT id, NULL::bigint AS dense_rank, rank AS keyword_rank, score
        FROM keyword ORDER BY rank LIMIT %(k)s
    )"""
    # Every candidate of either list gets its exact dense rank. A passage found only by its words lies below
    # the last dense candidate (`low`), so its dense share is 0, unless the approximate HNSW scan missed it.
    # keyword_rank stays NULL for a passage that matched no word of the question, as callers read it as
    # "matched a word of the question".
    return f"""
    fused AS (
        SELECT id, 1 - distance AS similarity, row_number() OVER (ORDER BY distance, id) AS dense_rank,
            keyword_rank, keyword_score
        FROM (
            -- A dense candidate's distance is at hand; only a keyword-only one is measured here.
            SELECT
                candidates.id,
                COALESCE(
                    dense.distance,
                    {_document_aware_distance("c", column, f"(c.{column} <=> %(embedding)s::vector)")}
                ) AS distance,
                keyword.rank AS keyword_rank,
                keyword.score AS keyword_score
            FROM (SELECT id FROM dense UNION SELECT id FROM keyword) candidates
            LEFT JOIN dense ON dense.id = candidates.id
            LEFT JOIN keyword ON keyword.id = candidates.id
            LEFT JOIN {Chunk._meta.db_table} c ON c.id = candidates.id AND dense.id IS NULL
        ) measured
    ),
    bounds AS (
        SELECT 1 - max(distance) AS low, 1 - min(distance) AS high,
            (SELECT max(score) FROM keyword) AS keyword_high
        FROM dense
    ),
    ranked AS (
        SELECT id, dense_rank, keyword_rank,
            %(dense_weight)s * CASE
                WHEN high > low THEN LEAST(GREATEST((similarity - low) / (high - low), 0), 1)
                WHEN similarity >= low THEN 1 ELSE 0
            END
            + (1 - %(dense_weight)s) * COALESCE(keyword_score / NULLIF(keyword_high, 0), 0) AS score
        FROM fused, bounds
        ORDER BY score DESC, dense_rank, id
        LIMIT %(k)s
    )"""


def search_sql(mode: Mode, column: str = "embedding", *, broad: bool = False) -> str:
    """The one retrieval statement for a mode, reading the vectors of `column` (one of EMBEDDING_COLUMNS).

    `broad`: the asker reads most collections, which changes the plan of the keyword scans, not their rows
    (_live_chunk_filter).
    """
    if column not in EMBEDDING_COLUMNS:
        raise ValueError(f"unknown embedding column {column!r}")
    ctes = []
    if mode in ("dense", "hybrid"):
        ctes.append(_dense_cte(column))
    if mode in ("keyword", "hybrid"):
        ctes.append(_keyword_cte(broad=broad))
    ctes.append(_ranked_cte(mode, column))
    return f"""
    WITH {",".join(ctes)}
    SELECT
        c.id, c.document_id, COALESCE(NULLIF(d.title, ''), d.original_name), c.collection_id, c.text,
        c.heading_path, c.page, c.char_start, c.char_end, ranked.score::float8, ranked.dense_rank,
        ranked.keyword_rank
    FROM ranked
    JOIN {Chunk._meta.db_table} c ON c.id = ranked.id
    JOIN {Document._meta.db_table} d ON d.id = c.document_id
    ORDER BY ranked.score DESC, LEAST(ranked.dense_rank, ranked.keyword_rank), c.id
    """


def run_search(
    *,
    collection_ids: Sequence[int],
    query: str,
    query_embedding: Sequence[float] | None,
    k: int,
    mode: Mode,
    dense_weight: float,
    candidates: int,
    ef_search: int,
    embedding_column: str = "embedding",
    collections_in_all: int | None = None,
) -> list[RetrievedChunk]:
    """The k best live chunks of `collection_ids` for the question.

    `collections_in_all` (how many collections exist, or None if unknown) only chooses the keyword scans'
    plan (_live_chunk_filter): a search of at least BROAD_SEARCH_SHARE of them is broad.
    """
    candidates = max(k, candidates)
    broad = collections_in_all is not None and len(collection_ids) >= BROAD_SEARCH_SHARE * collections_in_all
    params = {
        "collection_ids": list(collection_ids),
        "query": query,
        "embedding": vector_literal(query_embedding) if query_embedding is not None else None,
        "k": k,
        "dense_weight": dense_weight,
        "candidates": candidates,
    }
    ef = min(max(ef_search, candidates), 1000)
    # Django's psycopg cursors bind client-side, so the settings and the query travel as one message;
    # SET LOCAL keeps them to this transaction.
    statement = (
        "SET LOCAL hnsw.iterative_scan = relaxed_order;"
        f"SET LOCAL hnsw.ef_search = {int(ef)};" + search_sql(mode, embedding_column, broad=broad)
    )
    # On the read replica when DATABASE_REPLICA_URL is set (settings.RETRIEVAL_DATABASE), else the primary.
    alias = settings.RETRIEVAL_DATABASE
    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        cursor.execute(statement, params)
        while cursor.description is None and cursor.nextset():
            pass
        rows = cursor.fetchall()
    return [RetrievedChunk(*row) for row in rows]
