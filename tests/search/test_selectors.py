"""Retrieval on real PostgreSQL + pgvector: permissions, live generations, modes, selective filters."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser, Group, User
from django.db import connection
from django.http import Http404

from ingest.models import EMBEDDING_DIMENSIONS, Chunk, Collection, Document
from ops import inference
from search.retrieval import Mode, run_search, search_sql, vector_literal
from search.selectors import (
    chunk_get_for_user,
    chunk_search,
    collection_ids_readable_by,
    lexeme_frequencies,
)
from tests.processes import InferenceProcess, start_inference

pytestmark = pytest.mark.django_db

_serial = itertools.count()


def make_collection(*groups: Group) -> Collection:
    collection = Collection.objects.create(name=f"collection-{next(_serial)}")
    collection.groups.set(groups)
    return collection


def make_user(*groups: Group, superuser: bool = False) -> User:
    user = User.objects.create_user(username=f"user-{next(_serial)}", is_superuser=superuser)
    user.groups.set(groups)
    return user


def make_document(collection: Collection, *, title: str = "", generation: int = 1) -> Document:
    n = next(_serial)
    return Document.objects.create(
        collection=collection,
        file=f"documents/doc-{n}.txt",
        original_name=f"doc-{n}.txt",
        title=title,
        sha256=f"{n:064x}",
        generation=generation,
        status=Document.Status.READY,
    )


def add_chunk(
    document: Document,
    text: str,
    embedding: Sequence[float],
    *,
    generation: int | None = None,
    heading_path: str = "",
    ordinal: int | None = None,
) -> Chunk:
    if ordinal is None:
        ordinal = Chunk.objects.filter(document=document).count()
    return Chunk.objects.create(
        document=document,
        collection_id=document.collection_id,
        generation=document.generation if generation is None else generation,
        ordinal=ordinal,
        text=text,
        heading_path=heading_path,
        char_start=0,
        char_end=len(text),
        token_count=len(text.split()),
        embedding=list(embedding),
    )


def unit(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def at_cosine(cosine: float, *, axis: int = 2, away: int = 3) -> list[float]:
    """A unit vector whose cosine similarity to `basis(axis)` is exactly `cosine`."""
    vector = [0.0] * EMBEDDING_DIMENSIONS
    vector[axis], vector[away] = cosine, math.sqrt(1 - cosine * cosine)
    return vector


def basis(i: int, noise: float = 0.0, rng: random.Random | None = None) -> list[float]:
    """The i-th axis, optionally jittered: a deterministic vector for tests of pure SQL behaviour."""
    rng = rng or random.Random(i)
    vector = [rng.gauss(0, noise) if noise else 0.0 for _ in range(EMBEDDING_DIMENSIONS)]
    vector[i] += 1.0
    return unit(vector)


@pytest.fixture(scope="module")
def embeddings_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InferenceProcess]:
    """The real inference API serving embeddings only (no chat model to load)."""
    server = start_inference(log_dir=tmp_path_factory.mktemp("inference-logs"), chat_engine="none")
    yield server
    server.stop()


@pytest.fixture
def embed(embeddings_api: InferenceProcess, settings: Any) -> Any:
    settings.INFERENCE_URL = embeddings_api.url
    return inference.embed


ALL_MODES = ("keyword", "dense", "hybrid")


# Who may read what


def test_superuser_reads_every_collection() -> None:
    a, b = make_collection(), make_collection(Group.objects.create(name="g"))
    assert collection_ids_readable_by(user=make_user(superuser=True)) == sorted([a.id, b.id])


def test_user_reads_only_collections_sharing_a_group() -> None:
    staff, support = Group.objects.create(name="staff"), Group.objects.create(name="support")
    shared = make_collection(staff, support)
    staff_only = make_collection(staff)
    make_collection(support)
    make_collection()
    assert collection_ids_readable_by(user=make_user(staff)) == sorted([shared.id, staff_only.id])


def test_anonymous_and_groupless_users_read_nothing() -> None:
    make_collection(Group.objects.create(name="g"))
    assert collection_ids_readable_by(user=AnonymousUser()) == []
    assert collection_ids_readable_by(user=make_user()) == []


# Permission filtering inside the query


@pytest.mark.parametrize("mode", ALL_MODES)
def test_user_outside_a_collections_groups_never_gets_its_passages(mode: str) -> None:
    staff, board = Group.objects.create(name="staff"), Group.objects.create(name="board")
    public = make_document(make_collection(staff))
    secret = make_document(make_collection(board))
    for i in range(5):
        add_chunk(public, f"holiday policy paragraph {i}", basis(0, 0.3, random.Random(i)))
        # The secret passages match the query best, in words and in vector.
        add_chunk(secret, f"salary holiday policy holiday policy {i}", basis(0, 0.01, random.Random(i)))
    user = make_user(staff)

    results = chunk_search(
        collection_ids=collection_ids_readable_by(user=user),
        query="holiday policy salary",
        query_embedding=basis(0),
        k=10,
        mode=mode,
    )

    assert len(results) == 5
    assert {r.document_id for r in results} == {public.id}
    assert {r.collection_id for r in results} == {public.collection_id}


@pytest.mark.parametrize("mode", ALL_MODES)
def test_broad_and_narrow_searches_filter_the_same_rows(mode: Mode) -> None:
    """How many collections exist changes only the keyword scans' plan, never what an asker may read."""
    staff, board = Group.objects.create(name="staff"), Group.objects.create(name="board")
    public = make_document(make_collection(staff))
    secret = make_document(make_collection(board))
    old = make_document(make_collection(staff), generation=2)
    for i in range(5):
        add_chunk(public, f"holiday policy paragraph {i}", basis(0, 0.3, random.Random(i)))
        add_chunk(secret, f"salary holiday policy holiday policy {i}", basis(0, 0.01, random.Random(i)))
        stale = basis(0, 0.01, random.Random(i))
        add_chunk(old, f"salary holiday policy of last year {i}", stale, generation=1)
    readable = collection_ids_readable_by(user=make_user(staff))
    search = partial(
        run_search,
        collection_ids=readable,
        query="holiday policy salary",
        query_embedding=basis(0),
        k=10,
        mode=mode,
        dense_weight=0.75,
        candidates=50,
        ef_search=200,
    )

    narrow, broad = search(collections_in_all=100), search(collections_in_all=len(readable))

    if mode != "dense":
        assert "collection_id + 0) = ANY" in search_sql(mode, broad=True)
    assert narrow == broad
    assert {r.document_id for r in broad} == {public.id}


def test_empty_collection_ids_return_nothing_without_querying(django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(0):
        assert chunk_search(collection_ids=[], query="anything", query_embedding=basis(0)) == []


def test_dense_and_hybrid_need_the_query_embedding() -> None:
    with pytest.raises(ValueError, match="embedding"):
        chunk_search(collection_ids=[1], query="q", query_embedding=None, mode="hybrid")
    with pytest.raises(ValueError, match="mode"):
        chunk_search(collection_ids=[1], query="q", query_embedding=None, mode="fuzzy")


# Live generations


@pytest.mark.parametrize("mode", ALL_MODES)
def test_chunks_of_old_generations_are_never_returned(mode: str) -> None:
    document = make_document(make_collection(), generation=2)
    add_chunk(document, "reimbursement of travel expenses", basis(1), generation=1)
    live = add_chunk(document, "reimbursement of travel expenses", basis(1), generation=2)
    add_chunk(document, "reimbursement of travel expenses", basis(1), generation=3)  # being written

    results = chunk_search(
        collection_ids=[document.collection_id],
        query="travel reimbursement",
        query_embedding=basis(1),
        mode=mode,
    )

    assert [r.chunk_id for r in results] == [live.id]


# Selective filters and iterative index scans


def test_a_selective_collection_filter_still_returns_k_rows() -> None:
    """The HNSW scan continues past ef_search until k rows pass the permission filter."""
    rng = random.Random(7)
    crowd = make_document(make_collection())
    few = make_document(make_collection())
    # 3,000 passages near the query in a collection the user cannot read; 40 far from it in one they can.
    Chunk.objects.bulk_create(
        Chunk(
            document=document,
            collection_id=document.collection_id,
            generation=1,
            ordinal=i,
            text=f"passage {i}",
            char_start=0,
            char_end=10,
            token_count=2,
            embedding=unit([rng.gauss(0, 0.2) + (1.0 if j == 0 else 0.0) * sign for j in range(384)]),
        )
        for document, count, sign in ((crowd, 3000, 1.0), (few, 40, -1.0))
        for i in range(count)
    )
    with connection.cursor() as cursor:
        # On a table this small the planner would rightly read the 40 rows through the collection btree
        # and sort them; drop that choice (inside the test's transaction) so that the HNSW scan is tested.
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'ingest_chunk'"
            " AND indexdef LIKE '%%(collection_id)'"
        )
        for (index_name,) in cursor.fetchall():
            cursor.execute(f'DROP INDEX "{index_name}"')
        cursor.execute("ANALYZE ingest_chunk")
        cursor.execute("SET LOCAL enable_seqscan = off")
    query = basis(0)

    # Without iterative scans the index gives up after ef_search candidates, none of them readable.
    with connection.cursor() as cursor:
        cursor.execute(
            "SET LOCAL hnsw.iterative_scan = off; SET LOCAL hnsw.ef_search = 40;"
            "EXPLAIN (COSTS OFF) SELECT id FROM ingest_chunk WHERE collection_id = %(c)s"
            " ORDER BY embedding <=> %(q)s::vector LIMIT 20",
            {"c": few.collection_id, "q": vector_literal(query)},
        )
        while cursor.description is None and cursor.nextset():
            pass
        plan = "\n".join(row[0] for row in cursor.fetchall())
        assert "chunk_embedding_hnsw" in plan
        cursor.execute(
            "SELECT count(*) FROM (SELECT id FROM ingest_chunk WHERE collection_id = %(c)s"
            " ORDER BY embedding <=> %(q)s::vector LIMIT 20) hits",
            {"c": few.collection_id, "q": vector_literal(query)},
        )
        row = cursor.fetchone()
        assert row is not None and row[0] < 20

    results = chunk_search(
        collection_ids=[few.collection_id], query="", query_embedding=query, k=20, mode="dense", ef_search=40
    )

    assert len(results) == 20
    assert {r.document_id for r in results} == {few.id}
    assert [r.dense_rank for r in results] == list(range(1, 21))


def test_searching_some_collections_keeps_the_hnsw_scan() -> None:
    """An asker who reads part of the collections still gets the index scan, not a sort of every row.

    The live-generation filter used to be a scalar subquery, which the planner estimates at 0.5 % of rows:
    with 2 of 4 collections readable it expected about 100 live rows of 20,000, judged that the index scan
    would run dry before 50 candidates, and read every readable row and sorted them (40-100 ms at 100,000
    chunks). Joined to the document, the filter is estimated as what it is and the HNSW scan is kept.
    """
    collections = [make_collection() for _ in range(4)]
    documents = [make_document(collections[n % 4]) for n in range(200)]
    with connection.cursor() as cursor:
        # Random unit vectors, made in the database: 20,000 rows is where the planner starts to prefer the
        # index over sorting 10,000 readable rows, and building them in Python would take most of a minute.
        cursor.execute(
            """
            INSERT INTO ingest_chunk (document_id, collection_id, generation, ordinal, text, heading_path,
                                      char_start, char_end, token_count, embedding)
            SELECT d.id, d.collection_id, 1, n, 'passage', '', 0, 7, 1, v.embedding
            FROM ingest_document d CROSS JOIN generate_series(0, 99) AS n
            CROSS JOIN LATERAL (
                -- the reference to the outer row makes the subquery run once per row
                SELECT l2_normalize(array_agg(random() - 0.5)::vector) AS embedding
                FROM generate_series(1, %(dimensions)s) WHERE n >= 0
            ) v
            WHERE d.id = ANY(%(documents)s)
            """,
            {"dimensions": EMBEDDING_DIMENSIONS, "documents": [d.id for d in documents]},
        )
        cursor.execute("ANALYZE ingest_chunk; ANALYZE ingest_document")
        cursor.execute(
            "SET LOCAL hnsw.iterative_scan = relaxed_order; SET LOCAL hnsw.ef_search = 200;"
            "EXPLAIN (COSTS OFF) " + search_sql("dense"),
            {
                "collection_ids": [c.id for c in collections[:2]],
                "query": "",
                "embedding": vector_literal(basis(0)),
                "k": 10,
                "dense_weight": 0.75,
                "candidates": 50,
            },
        )
        while cursor.description is None and cursor.nextset():
            pass
        plan = "\n".join(row[0] for row in cursor.fetchall())

    assert "chunk_embedding_hnsw" in plan, plan


# Modes and fusion


def test_hybrid_is_a_weighted_sum_of_normalised_dense_and_keyword_scores() -> None:
    document = make_document(make_collection(), title="Handbook")
    both = add_chunk(document, "parking permits for staff", basis(2, 0.2))
    dense_only = add_chunk(document, "where to leave your car", basis(2, 0.05))
    keyword_only = add_chunk(document, "parking permits parking permits", basis(3))
    search = partial(
        chunk_search,
        collection_ids=[document.collection_id],
        query="parking permits",
        query_embedding=basis(2),
    )
    similarity = {r.chunk_id: r.score for r in search(mode="dense")}
    keyword_score = {r.chunk_id: r.score for r in search(mode="keyword")}

    results = search(mode="hybrid")

    # Similarity is min-max normalised over the dense candidates, the full-text score divided by the best
    # one; the dense side weighs DEFAULT_DENSE_WEIGHT = 0.75.
    low, high = min(similarity.values()), max(similarity.values())
    expected = {
        chunk_id: 0.75 * (similarity[chunk_id] - low) / (high - low)
        + 0.25 * keyword_score.get(chunk_id, 0.0) / max(keyword_score.values())
        for chunk_id in similarity
    }
    assert {r.chunk_id: r.score for r in results} == pytest.approx(expected)
    assert [r.chunk_id for r in results] == sorted(expected, key=lambda chunk_id: -expected[chunk_id])
    # Every candidate has a dense rank; keyword_rank is NULL for one that matched no query word.
    ranks = {r.chunk_id: (r.dense_rank, r.keyword_rank) for r in results}
    assert ranks[dense_only.id] == (1, None)
    assert ranks[both.id][0] == 2 and ranks[keyword_only.id][0] == 3
    assert ranks[keyword_only.id][1] == 1 and ranks[both.id][1] == 2
    assert results[0].document_title == "Handbook"


def test_hybrid_dense_weight_moves_between_keyword_and_dense_order() -> None:
    document = make_document(make_collection())
    dense_only = add_chunk(document, "where to leave your car", basis(2, 0.05))
    keyword_only = add_chunk(document, "parking permits parking permits", basis(3))
    search = partial(
        chunk_search,
        collection_ids=[document.collection_id],
        query="parking permits",
        query_embedding=basis(2),
        mode="hybrid",
    )

    assert [r.chunk_id for r in search(dense_weight=1.0)] == [dense_only.id, keyword_only.id]
    assert [r.chunk_id for r in search(dense_weight=0.0)] == [keyword_only.id, dense_only.id]
    with pytest.raises(ValueError, match="dense_weight"):
        search(dense_weight=1.5)


# Document-aware ranking


@pytest.mark.parametrize("mode", ["dense", "hybrid"])
def test_a_long_document_of_weak_matches_no_longer_outranks_a_short_document_that_answers(mode: str) -> None:
    """A chunk is scored with its document's opening, so a document about something else does not win
    with the one of its many chunks that happens to lie nearest the question."""
    collection = make_collection()
    answer = add_chunk(make_document(collection, title="Parking"), "staff park in lot B", at_cosine(0.8))
    manual = make_document(collection, title="Building manual")
    add_chunk(manual, "heating, lifts and fire doors", at_cosine(0.0, away=6))
    strays = [add_chunk(manual, f"section {n} on car lifts", at_cosine(0.85, away=7 + n)) for n in range(5)]

    results = chunk_search(
        collection_ids=[collection.id], query="where do staff park", query_embedding=basis(2), mode=mode
    )

    # Each stray chunk alone lies nearer the question (0.85) than the answer does (0.8), but the manual's
    # opening is about something else, and the short document that answers comes first.
    assert results[0].chunk_id == answer.id
    if mode == "dense":
        scores = {r.chunk_id: r.score for r in results}
        assert scores[answer.id] == pytest.approx(0.8)
        assert scores[strays[0].id] == pytest.approx((0.85 + 0.0) / 2)
    # Results stay chunks, so citations still point at passages.
    assert {r.document_id for r in results} == {answer.document_id, manual.id}


def test_an_old_generations_opening_never_scores_a_live_chunk() -> None:
    document = make_document(make_collection(), generation=2)
    add_chunk(document, "old opening", basis(2), generation=1, ordinal=0)
    add_chunk(document, "new opening", at_cosine(0.0, away=6), generation=2, ordinal=0)
    live = add_chunk(document, "travel expenses", at_cosine(0.6), generation=2, ordinal=1)

    results = chunk_search(
        collection_ids=[document.collection_id], query="", query_embedding=basis(2), mode="dense"
    )

    assert {r.chunk_id: r.score for r in results}[live.id] == pytest.approx(0.3)


def test_keyword_mode_matches_any_query_term_and_prefers_more_of_them() -> None:
    document = make_document(make_collection())
    one_term = add_chunk(document, "The canteen opens at eight.", basis(4))
    two_terms = add_chunk(document, "The canteen menu changes weekly.", basis(5))
    # Enough other chunks that "canteen" is not a common word (in more than a tenth of them).
    for i in range(20):
        add_chunk(document, f"Unrelated text about printers, floor {i}.", basis(6))

    results = chunk_search(
        collection_ids=[document.collection_id],
        query="When does the canteen publish its menu?",
        query_embedding=None,
        mode="keyword",
    )

    assert [r.chunk_id for r in results] == [two_terms.id, one_term.id]
    assert all(r.dense_rank is None for r in results)


def test_heading_path_counts_in_keyword_ranking() -> None:
    document = make_document(make_collection())
    in_heading = add_chunk(document, "Ask your manager first.", basis(4), heading_path="Expenses > Mileage")
    in_body = add_chunk(document, "Mileage is listed on the form among other things.", basis(5))

    results = chunk_search(
        collection_ids=[document.collection_id], query="mileage", query_embedding=None, mode="keyword"
    )

    assert [r.chunk_id for r in results] == [in_heading.id, in_body.id]


def test_keyword_ranking_weighs_rare_words_above_common_ones() -> None:
    """One rare query word beats many repetitions of a common one (counted as the chunks are written)."""
    document = make_document(make_collection())
    for i in range(60):
        add_chunk(document, f"The expense policy, section {i}.", basis(7))
    repeats_common = add_chunk(document, "Policy policy policy: the policy on policies.", basis(8))
    has_rare = add_chunk(document, "Quokkas may not be brought to the office.", basis(9))

    results = chunk_search(
        collection_ids=[document.collection_id],
        query="What is the policy on quokkas?",
        query_embedding=None,
        mode="keyword",
        k=3,
    )

    # "policy" is in nearly every chunk: it adds to the score but does not select candidates on its own.
    assert [r.chunk_id for r in results] == [has_rare.id]
    only_common = chunk_search(
        collection_ids=[document.collection_id], query="policy", query_embedding=None, mode="keyword", k=3
    )
    assert only_common[0].chunk_id == repeats_common.id


def test_keyword_scores_chunks_holding_two_medium_words_beside_those_holding_the_rarest() -> None:
    """The rarest word fills the scoring budget, yet a chunk with two of the next words is scored too."""
    document = make_document(make_collection())
    for i in range(200):
        add_chunk(document, f"Unrelated text about printers, floor {i}.", basis(6))
    for i in range(12):
        add_chunk(document, f"A zebra crossing, number {i}.", basis(7))
    for i in range(15):
        add_chunk(document, f"Apple pie, recipe {i}.", basis(8))
        add_chunk(document, f"Mango season, week {i}.", basis(9))
    both = add_chunk(document, "An apple and mango smoothie.", basis(10))

    # k = candidates = 1: the rarest word ("zebra", 12 chunks) alone exceeds the budget of 10 chunks.
    results = chunk_search(
        collection_ids=[document.collection_id],
        query="zebra apple mango",
        query_embedding=None,
        mode="keyword",
        k=1,
        candidates=1,
    )

    assert [r.chunk_id for r in results] == [both.id]


@pytest.mark.parametrize("mode", ["keyword", "hybrid"])
def test_another_collections_words_never_move_this_ones_ranking(mode: str) -> None:
    """Words are weighed by the collections searched: a word that fills someone else's collection stays
    the rare word of this one, and this collection ranks the same whether the other exists or not."""
    searched, other = make_collection(), make_collection()
    document = make_document(searched)
    rare_here = add_chunk(document, "Quokkas may visit on Fridays.", basis(4))
    add_chunk(document, "The office opens at eight.", basis(5))
    add_chunk(document, "The office closes at six.", basis(6))
    crowded = make_document(other)
    for i in range(40):
        add_chunk(crowded, f"Quokka sighting number {i}.", basis(7))
    search = partial(
        chunk_search,
        collection_ids=[searched.id],
        query="quokka office",
        query_embedding=basis(9),
        mode=mode,
    )

    with_other = [(r.chunk_id, round(r.score, 9)) for r in search()]
    other.delete()
    alone = [(r.chunk_id, round(r.score, 9)) for r in search()]

    # In the searched collection "quokka" (1 of 3 chunks) is rarer than "office" (2 of 3).
    assert with_other[0][0] == rare_here.id
    assert with_other == alone


def test_lexeme_frequencies_count_only_the_collections_searched() -> None:
    searched, other = make_collection(), make_collection()
    add_chunk(make_document(searched), "Quokkas may visit.", basis(4))
    add_chunk(make_document(searched), "Parking rules.", basis(5))
    add_chunk(make_document(other), "Quokka sighting.", basis(6))

    assert lexeme_frequencies(lexemes=["quokka", "park"], collection_ids=[searched.id]) == (
        {"quokka": 1, "park": 1},
        2,
    )
    assert lexeme_frequencies(lexemes=["quokka"], collection_ids=[searched.id, other.id]) == (
        {"quokka": 2},
        3,
    )
    assert lexeme_frequencies(lexemes=["quokka"], collection_ids=[]) == ({}, 0)


def test_keyword_queries_with_quotes_and_backslashes_are_safe() -> None:
    document = make_document(make_collection())
    chunk = add_chunk(document, r"Use C:\temp\ for O'Reilly's files & (stuff) | x:* !", basis(7))
    for query in (r"C:\temp\ O'Reilly's", "a & b | !c <-> 'quoted' :*", "", "   ", "the of and"):
        results = chunk_search(
            collection_ids=[document.collection_id], query=query, query_embedding=None, mode="keyword"
        )
        assert [r.chunk_id for r in results] in ([], [chunk.id])
    results = chunk_search(
        collection_ids=[document.collection_id],
        query="O'Reilly's files",
        query_embedding=None,
        mode="keyword",
    )
    assert [r.chunk_id for r in results] == [chunk.id]


def test_modes_differ_on_real_embeddings(embed: Any) -> None:
    """Dense finds a paraphrase without shared words; keyword finds a rare identifier; hybrid finds both."""
    document = make_document(make_collection())
    texts = [
        "If you forgot your login credentials, use the account recovery link to regain access.",
        "Error code ZX-4417 means the badge printer ran out of ribbon.",
        "The cafeteria serves vegetarian lunch on Fridays.",
        "Quarterly reports are due on the fifth working day.",
        "Visitors must sign in at reception and wear a badge.",
    ]
    chunks = [add_chunk(document, text, vector) for text, vector in zip(texts, embed(texts), strict=True)]
    paraphrase, identifier = chunks[0], chunks[1]
    query = "How do I reset my password? ZX-4417"
    [query_embedding] = embed([query])

    def search(mode: str) -> list[int]:
        results = chunk_search(
            collection_ids=[document.collection_id], query=query, query_embedding=query_embedding, mode=mode
        )
        return [r.chunk_id for r in results]

    keyword, dense, hybrid = search("keyword"), search("dense"), search("hybrid")
    assert keyword == [identifier.id]
    assert dense[0] == paraphrase.id
    assert len(dense) == len(texts)
    assert hybrid[:2] == [identifier.id, paraphrase.id] or hybrid[:2] == [paraphrase.id, identifier.id]


# One passage


def test_chunk_get_for_user_returns_a_readable_passage() -> None:
    staff = Group.objects.create(name="staff")
    chunk = add_chunk(make_document(make_collection(staff)), "text", basis(0))
    assert chunk_get_for_user(user=make_user(staff), chunk_id=chunk.id) == chunk
    assert chunk_get_for_user(user=make_user(superuser=True), chunk_id=chunk.id) == chunk


def test_chunk_get_for_user_hides_unreadable_and_missing_passages() -> None:
    chunk = add_chunk(make_document(make_collection(Group.objects.create(name="board"))), "text", basis(0))
    outsider = make_user(Group.objects.create(name="staff"))
    for user, chunk_id in (
        (outsider, chunk.id),
        (AnonymousUser(), chunk.id),
        (make_user(superuser=True), chunk.id + 1000),
    ):
        with pytest.raises(Http404):
            chunk_get_for_user(user=user, chunk_id=chunk_id)
