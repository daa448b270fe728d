"""Demo data: the seed page (``data/seed.json``) placed around a demo date, generated
filler articles and comments in Russian, and N demo subscribers.

Everything is deterministic for a given date (one seeded generator), and
goes through the real ``ingest`` path, so re-running the demo updates the
same articles and never doubles a comment.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from digest.db import transaction
from digest.ingest import Ingester, IngestReport
from digest.models import Section, Subscriber, SubscriberStatus
from digest.render import section_key
from digest.schedule import Schedule
from digest.tokens import new_token_key

SITE = "https://vpk.example.ru"
SECTIONS = ["Политика", "Армия", "Флот", "Авиация", "Космос", "ОПК", "Аналитика"]
DOMAINS = ["example.ru", "example.com", "mail.example.ru", "yandex.example.ru", "example.org"]
FIRST = [
    "Алексей",
    "Мария",
    "Сергей",
    "Ольга",
    "Дмитрий",
    "Анна",
    "Игорь",
    "Елена",
    "Павел",
    "Наталья",
    "Андрей",
    "Татьяна",
    "Михаил",
    "Ирина",
    "Владимир",
    "Юлия",
    "Николай",
    "Светлана",
    "Артём",
    "Ксения",
    "Фёдор",
    "Людмила",
    "Григорий",
    "Вера",
]
LAST = [
    "Иванов",
    "Смирнов",
    "Кузнецов",
    "Попов",
    "Соколов",
    "Лебедев",
    "Козлов",
    "Новиков",
    "Морозов",
    "Петров",
    "Волков",
    "Соловьёв",
    "Васильев",
    "Зайцев",
    "Павлов",
    "Семёнов",
    "Голубев",
    "Виноградов",
    "Богданов",
    "Воробьёв",
]
NICKS = [
    "штурм",
    "Бывалый",
    "Сибиряк",
    "Мичман",
    "Старлей",
    "Зенитчик",
    "Горец",
    "Прапор",
    "Пехота",
    "Танкист",
    "Летун",
    "Подводник",
    "Аналитик",
    "Скептик",
    "Оптимист",
    "Ветеран",
    "Инженер",
    "Конструктор",
    "Наблюдатель",
    "Читатель",
    "Уралец",
    "Дальневосточник",
    "Балтиец",
    "Североморец",
    "Артиллерист",
    "Связист",
    "Сапёр",
    "Десантник",
    "Радист",
    "Штурман",
    "Капитан",
    "Полковник",
    "Технарь",
    "Историк",
    "Волгарь",
    "Каспиец",
]
PHRASES = [
    "Интересно, когда это дойдёт до войск, а не останется на бумаге.",
    "Автор явно не служил, но в целом мысль верная.",
    "Сроки опять сдвинут вправо, как обычно.",
    "Главное — серийное производство, а не выставочные образцы.",
    "Без нормальной связи и разведки всё это мало что даёт.",
    "Цитата из статьи говорит сама за себя.",
    "Надо смотреть на цифры поставок, а не на заявления.",
    "У нас любят громкие анонсы, а потом тишина.",
    "Это логичный шаг, давно пора было.",
    "Вопрос в цене: сколько это будет стоить бюджету?",
    "Западные эксперты как всегда всё знают лучше всех.",
    "Пока испытания не закончены, говорить рано.",
    "Хорошая новость для флота, если не затянут.",
    "Двигатели — вот главная проблема, остальное решаемо.",
    "Согласен с предыдущим оратором полностью.",
    "Не согласен: опыт последних лет говорит об обратном.",
    "Для экспорта это важнее, чем для своих войск.",
    "Без импортных комплектующих справились? Верится с трудом.",
    "Ждём подробностей от министерства.",
    "Статья хорошая, но заголовок кликбейтный.",
]
FILLER: list[tuple[str, str, str]] = [
    (
        "Армия",
        "В Южном военном округе начались учения мотострелков с боевой стрельбой",
        "Более двух тысяч военнослужащих и около трёхсот единиц техники задействованы в учениях.",
    ),
    (
        "Армия",
        "Войска получили новую партию модернизированных танков Т-90М",
        "Машины оснащены усиленной защитой и новым комплексом управления огнём.",
    ),
    (
        "Армия",
        "Артиллеристы освоили новые корректируемые боеприпасы",
        "Расчёты отработали стрельбу по целям на дальности свыше двадцати километров.",
    ),
    (
        "Флот",
        "Фрегат Северного флота вышел в дальний поход",
        "Корабль выполнит задачи в Атлантике и посетит несколько иностранных портов.",
    ),
    (
        "Флот",
        "На судостроительном заводе заложили новый малый ракетный корабль",
        "Корабль проекта станет очередным носителем крылатых ракет в составе флота.",
    ),
    (
        "Флот",
        "Подводная лодка завершила государственные испытания",
        "После подписания приёмного акта лодка войдёт в состав Тихоокеанского флота.",
    ),
    (
        "Авиация",
        "Первый серийный самолёт нового типа передан военным лётчикам",
        "Машина прошла полный цикл заводских и государственных испытаний.",
    ),
    (
        "Авиация",
        "Вертолётчики отработали десантирование в горной местности",
        "Экипажи выполнили полёты на предельно малых высотах днём и ночью.",
    ),
    (
        "Авиация",
        "Истребители провели учебные воздушные бои над Балтикой",
        "Лётчики отработали перехват целей с применением средств радиоэлектронной борьбы.",
    ),
    (
        "Космос",
        "С космодрома Плесецк запущен спутник в интересах Минобороны",
        "Аппарат успешно выведен на расчётную орбиту и взят на управление.",
    ),
    (
        "Космос",
        "Ракета-носитель нового поколения прошла огневые испытания",
        "Испытания подтвердили расчётные характеристики двигательной установки.",
    ),
    (
        "ОПК",
        "Оборонные предприятия нарастили выпуск беспилотников",
        "Производство отдельных типов аппаратов выросло в несколько раз за год.",
    ),
    (
        "ОПК",
        "Концерн представил модернизированный зенитный ракетный комплекс",
        "Комплекс получил новую радиолокационную станцию и увеличенный боекомплект.",
    ),
    (
        "ОПК",
        "Завод перешёл на круглосуточный режим работы по гособоронзаказу",
        "На предприятии открыты сотни новых рабочих мест.",
    ),
    (
        "Политика",
        "Министры обороны обсудили военно-техническое сотрудничество",
        "Стороны договорились о совместных учениях и обмене опытом.",
    ),
    (
        "Политика",
        "В Госдуме рассмотрят поправки о военной службе по контракту",
        "Законопроект касается выплат и социальных гарантий военнослужащим.",
    ),
    (
        "Аналитика",
        "Эксперты оценили перспективы тяжёлых беспилотников",
        "Разбираемся, какие задачи смогут решать аппараты нового класса.",
    ),
    (
        "Аналитика",
        "Почему противовоздушная оборона стала главным приоритетом",
        "Опыт последних конфликтов заставляет пересмотреть структуру войск.",
    ),
    (
        "Армия",
        "Инженерные войска получили новые машины разминирования",
        "Техника позволяет проделывать проходы в минных полях дистанционно.",
    ),
    (
        "Флот",
        "Морская авиация провела поиск подводной лодки условного противника",
        "В учениях участвовали противолодочные самолёты и вертолёты.",
    ),
    (
        "ОПК",
        "Экспорт вооружений: подписаны новые контракты на поставку вертолётов",
        "Стоимость соглашений оценивается в сотни миллионов долларов.",
    ),
    (
        "Космос",
        "Группировка спутников связи будет расширена",
        "До конца года планируется запуск ещё нескольких аппаратов.",
    ),
    (
        "Авиация",
        "Модернизированный бомбардировщик совершил первый полёт",
        "Полёт продолжался более часа и прошёл в штатном режиме.",
    ),
    (
        "Армия",
        "Спор о танках: что лучше для современного боя",
        "Две школы танкостроения и их аргументы.",
    ),
]
FLAME_WAR = 23  # FILLER index: two commenters argue all day; the cap keeps it modest


@dataclass(frozen=True)
class DemoData:
    edition_date: date
    records: list[dict[str, Any]]


def _seed_data() -> dict[str, Any]:
    text = resources.files("digest").joinpath("data/seed.json").read_text(encoding="utf-8")
    return json.loads(text)  # type: ignore[no-any-return]


def _local(value: str, year: int | None, zone: ZoneInfo) -> datetime:
    """«14.09.2018 20:53», or «01.06 17:03» with the year given, in the site's zone."""
    if year is not None:
        value = f"{value[:5]}.{year}{value[5:]}"
    return datetime.strptime(value, "%d.%m.%Y %H:%M").replace(tzinfo=zone)


def build(schedule: Schedule, edition_date: date) -> DemoData:
    """Every article record of the demo for ``edition_date``'s window."""
    rng = random.Random(f"digest-demo-{edition_date.isoformat()}")
    zone = schedule.zone
    start, end = schedule.bounds(edition_date)
    prefix = edition_date.strftime("%Y%m%d")
    seed = _seed_data()
    records = [_seed_article(seed["article"], prefix, zone, start, rng)]
    records += _discussed(seed["discussed"], seed["discussed_year"], prefix, zone, end, rng)
    records += _filler(prefix, start, end, rng)
    return DemoData(edition_date, records)


def _seed_article(
    article: dict[str, Any], prefix: str, zone: ZoneInfo, start: datetime, rng: random.Random
) -> dict[str, Any]:
    published = _local(article["published_local"], None, zone)
    # The page's own spacing, moved so that publication is 40 minutes into the window.
    shift = start + timedelta(minutes=40) - published
    comments = [
        {
            "number": c["number"],
            "author": c["author"] or rng.choice(NICKS[1:]),
            "posted_at": (_local(c["posted_local"], None, zone) + shift).isoformat(),
            "body": c["body"],
            "votes": c["votes"],
        }
        for c in article["comments"]
    ]
    return {
        "id": f"{prefix}-seed",
        "url": f"{SITE}/news/{prefix}-azerbaidzhan-derzhit-kurs-na-odkb.html",
        "title": article["title"],
        "lead": article["paragraphs"][0],
        "section": article["section"],
        "published_at": (published + shift).isoformat(),
        "views": article["views"],
        "rating": article["rating"],
        "image_url": f"{SITE}/images/news/{article['image_name']}.jpg",
        "image_caption": article["image_caption"],
        "source": "Vzglyad.az",
        "comments": comments,
    }


def _discussed(
    items: list[dict[str, Any]],
    year: int,
    prefix: str,
    zone: ZoneInfo,
    end: datetime,
    rng: random.Random,
) -> Iterator[dict[str, Any]]:
    times = [_local(i["posted_local"], year, zone) for i in items]
    # The newest item lands 30 minutes before the window closes; the rest keep their spacing.
    shift = end - timedelta(minutes=30) - max(times)
    for n, (item, when) in enumerate(zip(items, times, strict=True), start=1):
        last = (when + shift).astimezone(UTC)
        count = item["comments"]
        # The sidebar time is the latest activity; busy threads started days earlier.
        age = (
            timedelta(days=4)
            if count >= 1000
            else timedelta(days=2)
            if count >= 100
            else (timedelta(hours=rng.randint(1, 3)) if count else timedelta(0))
        )
        published = last - age
        yield {
            "id": f"{prefix}-talk-{n:02d}",
            "url": f"{SITE}/news/{prefix}-talk-{n:02d}.html",
            "title": item["title"],
            "lead": None,
            "section": item["section"],
            "published_at": published.isoformat(),
            "views": count * rng.randint(8, 15) + rng.randint(100, 900),
            "rating": rng.randint(-5, 40),
            "comments": _comments(count, published, last, rng),
        }


def _comments(
    count: int,
    first: datetime,
    last: datetime,
    rng: random.Random,
    authors: list[str] | None = None,
) -> list[dict[str, Any]]:
    span = (last - first).total_seconds()
    pool = authors or NICKS[1:]  # NICKS[0] is the seed page's real commenter
    stamps = sorted(first + timedelta(seconds=span * rng.random() ** 2) for _ in range(count - 1))
    if count:
        stamps.append(last)
    return [
        {
            "number": number,
            # Zipf-like: a few regulars write much of every thread.
            "author": pool[min(int(rng.paretovariate(1.2)) - 1, len(pool) - 1)]
            if authors is None
            else pool[number % len(pool)],
            "posted_at": stamp.isoformat(),
            "body": " ".join(rng.sample(PHRASES, rng.randint(1, 3))),
            "votes": rng.randint(-3, 15),
        }
        for number, stamp in enumerate(stamps, start=1)
    ]


def _filler(
    prefix: str, start: datetime, end: datetime, rng: random.Random
) -> Iterator[dict[str, Any]]:
    window = (end - start).total_seconds()
    for n, (section, title, lead) in enumerate(FILLER, start=1):
        inside = n % 4 != 0  # three in four in the window, the rest in the days before
        offset = window * rng.uniform(0.03, 0.97)
        published = (
            start
            + timedelta(seconds=offset)
            - (timedelta(days=rng.randint(1, 3)) if not inside else timedelta(0))
        )
        if n - 1 == FLAME_WAR:
            published = start + timedelta(hours=2)
            comments = _comments(
                80, published, end - timedelta(minutes=20), rng, authors=["Танкист", "Летун"]
            )
        else:
            count = rng.choice([0, 0, 1, 2, 3, 5, 8, 12, 20, 35])
            comments = _comments(
                count,
                published,
                min(end - timedelta(minutes=1), published + timedelta(hours=30)),
                rng,
            )
        yield {
            "id": f"{prefix}-news-{n:02d}",
            "url": f"{SITE}/news/{prefix}-news-{n:02d}.html",
            "title": title,
            "lead": lead,
            "section": section,
            "published_at": published.isoformat(),
            "views": rng.randint(150, 1300),
            "rating": rng.randint(-3, 25),
            "image_url": f"{SITE}/images/news/{prefix}-{n:02d}.jpg" if n % 3 == 0 else None,
            "image_caption": f"Фото: пресс-служба. {title[:40]}" if n % 3 == 0 else None,
            "comments": comments,
        }


def load(factory: sessionmaker[Session], data: DemoData) -> IngestReport:
    report = Ingester(factory).load((f"demo:{r['id']}", r) for r in data.records)
    with transaction(factory) as session:
        for position, title in enumerate(SECTIONS):
            session.execute(update(Section).where(Section.title == title).values(position=position))
    return report


def add_subscribers(
    factory: sessionmaker[Session], count: int, *, now: datetime, seed: str = "subscribers"
) -> tuple[int, int]:
    """Make sure ``reader00001@…`` … exist (active, confirmed): returns (total, added).
    One subscriber in ten chose some sections, so the edition has several variants.
    Made in chunks, so a list of 100 000 is never held in memory at once."""
    rng = random.Random(seed)
    choices = [section_key(["Армия", "Флот"]), section_key(["Космос", "Авиация", "ОПК"])]
    added = 0
    for first in range(1, count + 1, 5000):
        numbers = range(first, min(first + 5000, count + 1))
        emails = [f"reader{i:05d}@{DOMAINS[i % len(DOMAINS)]}" for i in numbers]
        # Draw for every reader, new or not, so names stay the same across runs.
        people = [
            (
                None if rng.random() < 0.15 else f"{rng.choice(FIRST)} {rng.choice(LAST)}",
                rng.choice(choices) if rng.random() < 0.1 else None,
            )
            for _ in emails
        ]
        with transaction(factory) as session:
            existing = set(
                session.scalars(select(Subscriber.email).where(Subscriber.email.in_(emails)))
            )
            rows = [
                {
                    "email": email,
                    "name": name,
                    "status": SubscriberStatus.ACTIVE,
                    "locale": "ru",
                    "sections": sections,
                    "frequency": "daily",
                    "token_key": new_token_key(),
                    "consent_at": now,
                    "consent_source": "demo",
                    "confirmed_at": now,
                    "created_at": now,
                }
                for email, (name, sections) in zip(emails, people, strict=True)
                if email not in existing
            ]
            if rows:
                session.execute(insert(Subscriber), rows)
            added += len(rows)
    return count, added
