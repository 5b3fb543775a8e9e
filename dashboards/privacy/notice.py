"""The analytics section of the privacy policy, generated from the live configuration.

It replaces the seed policy's "Google Analytics" section, so what the policy promises is what
the configuration does: retention, IP truncation, region, opt-out signals, k-suppression and
device-ID rotation all come from `firstparty.toml`. English, French and Dutch.
"""

from __future__ import annotations

from dataclasses import dataclass

from dashboards.privacy.document import Block, h, p, ul
from firstparty.config import Config
from store.url import parse_store_url

LANGUAGES = ("en", "fr", "nl")
ROTATION_WORDS = {
    "en": {"daily": "day", "weekly": "week", "monthly": "month", "13months": "13 months"},
    "fr": {"daily": "jour", "weekly": "semaine", "monthly": "mois", "13months": "13 mois"},
    "nl": {"daily": "dag", "weekly": "week", "monthly": "maand", "13months": "13 maanden"},
}


@dataclass(frozen=True)
class Facts:
    sites: tuple[str, ...]
    raw_days: int
    aggregate_months: int
    region: bool
    keep_prefix: bool
    v4: int
    v6: int
    dnt: bool
    gpc: bool
    k: int
    rotation: str
    optout_url: str
    goals: tuple[str, ...]
    local_store: bool

    @classmethod
    def of(cls, config: Config) -> Facts:
        p_ = config.privacy
        base = config.server.public_url.rstrip("/")
        target = parse_store_url(config.store)
        return cls(
            sites=tuple(s.domain for s in config.sites),
            raw_days=p_.raw_retention_days,
            aggregate_months=p_.aggregate_retention_months,
            region=p_.store_region,
            keep_prefix=p_.keep_ip_prefix,
            v4=p_.ipv4_prefix,
            v6=p_.ipv6_prefix,
            dnt=p_.honour_dnt,
            gpc=p_.honour_gpc,
            k=p_.min_visitors,
            rotation=p_.visitor_id_rotation,
            optout_url=f"{base}/optout" if base else "/optout",
            goals=tuple(g.name for g in config.goals),
            local_store=target.kind == "chdb",
        )


def _signals(f: Facts, gpc: str, dnt: str, sep: str) -> str:
    return sep.join(s for s, on in ((gpc, f.gpc), (dnt, f.dnt)) if on)


def english(f: Facts) -> list[Block]:
    sites = ", ".join(f.sites) or "our websites"
    signals = _signals(f, "Global Privacy Control (GPC)", "Do Not Track (DNT)", " or ")
    return [
        h(2, "Analytics"),
        p(
            f"We measure the audience of {sites} with our own analytics system, hosted "
            + ("on our own servers" if f.local_store else "on systems we control")
            + ". No third party (such as Google) receives data about your visit, the data is "
            "not sold, shared or transferred to another country, and it is not used for "
            "advertising or to build a profile of you. We do not place cookies or use any "
            "other storage on your device for this."
        ),
        h(3, "What we collect"),
        ul(
            "The page you visit, without its query string (only the campaign tags `utm_*`, "
            "`ref` and `source` are kept). E-mail addresses, long tokens and ID-like numbers "
            "are removed from addresses before they are stored.",
            "The website that referred you (its address without query string) and campaign tags.",
            f"Your country{' and region' if f.region else ''}, derived from your IP address. "
            "Your IP address itself is not stored"
            + (
                f"; only its network part is kept (the first {f.v4} bits of an IPv4 address, "
                f"the first {f.v6} bits of an IPv6 address)."
                if f.keep_prefix
                else "."
            ),
            "Your browser and operating system (name and major version) and the type of device "
            "(desktop, mobile, tablet), read from your browser's user agent, which is not "
            "stored.",
            "The time of the visit, the time spent on the page, how far you scroll, and the "
            "actions on the page that we measure"
            + (f" (such as: {', '.join(f.goals)})." if f.goals else "."),
            "A visitor code: a keyed hash of the website, your IP address and your user agent, "
            "computed with a random secret that is replaced every day and then destroyed. It "
            "lets us count unique visitors within a day; once the secret is destroyed, nobody, "
            "including us, can link the code to you or to your visits on other days or sites.",
            "In our apps only: if the app sends a device identifier, we store a keyed hash of "
            f"it, with a key that is replaced every {ROTATION_WORDS['en'][f.rotation]} and then "
            "destroyed. The identifier itself is never stored.",
        ),
        h(3, "Why, and on what basis"),
        p(
            "To know how our website is used and to improve it. The legal basis is our "
            "legitimate interest (GDPR article 6(1)(f)). The measurement is designed to meet "
            "the conditions under which audience measurement is exempt from consent: it serves "
            "audience measurement only, does not follow you across websites, locates you no "
            "more precisely than your "
            + ("region" if f.region else "country")
            + ", keeps data for a limited time and lets you opt out."
        ),
        h(3, "How long we keep it"),
        ul(
            f"Detailed records of visits: {f.raw_days} days, then they are deleted automatically.",
            f"Aggregated statistics (counts per page, source, country, browser...; no visitor "
            f"code): {f.aggregate_months} months.",
            (
                f"Reports never show a group of fewer than {f.k} visitors on its own."
                if f.k >= 2
                else ""
            ),
        ),
        h(3, "Your choices and rights"),
        ul(
            (
                f"If your browser sends a {signals} signal, your visits are not recorded at all."
                if signals
                else ""
            ),
            f"You can opt out of the measurement on this page: [{f.optout_url}]({f.optout_url}).",
            "You have the right to access, rectify and erase your data, to restrict or object to "
            "its processing, and to data portability. For app users we can find, export and "
            "delete the data linked to your device identifier. For web visits we store no "
            "identifier that we could link to you (GDPR article 11), so we cannot single out "
            "your records; on request we explain this in writing.",
            "To exercise these rights, contact us as described in the Contact Us section. You "
            "may also lodge a complaint with a supervisory authority, in Belgium the Data "
            "Protection Authority ([www.dataprotectionauthority.be]"
            "(https://www.dataprotectionauthority.be)).",
        ),
    ]


def french(f: Facts) -> list[Block]:
    sites = ", ".join(f.sites) or "nos sites"
    signals = _signals(f, "Global Privacy Control (GPC)", "Do Not Track (DNT)", " ou ")
    return [
        h(2, "Mesure d'audience"),
        p(
            f"Nous mesurons l'audience de {sites} avec notre propre outil de mesure, hébergé "
            + (
                "sur nos propres serveurs"
                if f.local_store
                else "sur des systèmes que nous maîtrisons"
            )
            + ". Aucun tiers (tel que Google) ne reçoit de données sur votre visite ; ces données "
            "ne sont ni vendues, ni partagées, ni transférées vers un autre pays, ni utilisées à "
            "des fins publicitaires ou de profilage. Nous ne déposons aucun cookie et "
            "n'utilisons aucun autre stockage sur votre appareil à cette fin."
        ),
        h(3, "Les données collectées"),
        ul(
            "La page consultée, sans ses paramètres d'URL (sauf les balises de campagne "
            "`utm_*`, `ref` et `source`). Les adresses e-mail, les jetons longs et les numéros "
            "ressemblant à des identifiants sont retirés des adresses avant tout stockage.",
            "Le site qui vous a dirigé vers nous (son adresse sans paramètres) et les balises "
            "de campagne.",
            f"Votre pays{' et votre région' if f.region else ''}, déduit de votre adresse IP. "
            "Votre adresse IP elle-même n'est pas conservée"
            + (
                f" ; seule sa partie réseau est conservée (les {f.v4} premiers bits d'une "
                f"adresse IPv4, les {f.v6} premiers bits d'une adresse IPv6)."
                if f.keep_prefix
                else "."
            ),
            "Votre navigateur et votre système d'exploitation (nom et version majeure) et le "
            "type d'appareil (ordinateur, mobile, tablette), lus dans l'en-tête « user agent » "
            "de votre navigateur, qui n'est pas conservé.",
            "L'heure de la visite, le temps passé sur la page, la profondeur de défilement et "
            "les actions mesurées sur la page"
            + (f" (par exemple : {', '.join(f.goals)})." if f.goals else "."),
            "Un code visiteur : une empreinte (hachage à clé) du site, de votre adresse IP et de "
            "votre « user agent », calculée avec un secret aléatoire remplacé chaque jour puis "
            "détruit. Il permet de compter les visiteurs uniques d'une journée ; une fois le "
            "secret détruit, personne, nous compris, ne peut relier ce code à vous ni à vos "
            "visites d'autres jours ou d'autres sites.",
            "Dans nos applications uniquement : si l'application transmet un identifiant "
            "d'appareil, nous n'en conservons qu'une empreinte à clé, avec une clé remplacée "
            f"chaque {ROTATION_WORDS['fr'][f.rotation]} puis détruite. L'identifiant lui-même "
            "n'est jamais conservé.",
        ),
        h(3, "Finalité et base légale"),
        p(
            "Connaître l'utilisation de notre site pour l'améliorer. La base légale est notre "
            "intérêt légitime (article 6, paragraphe 1, point f) du RGPD). La mesure est conçue "
            "pour respecter les conditions d'exemption de consentement des outils de mesure "
            "d'audience : finalité limitée à la mesure d'audience, aucun suivi d'un site à "
            "l'autre, localisation limitée au "
            + ("niveau de la région" if f.region else "pays")
            + ", durée de conservation limitée et possibilité de s'y opposer."
        ),
        h(3, "Durée de conservation"),
        ul(
            f"Données détaillées des visites : {f.raw_days} jours, puis suppression automatique.",
            "Statistiques agrégées (comptages par page, source, pays, navigateur... ; sans code "
            f"visiteur) : {f.aggregate_months} mois.",
            (
                f"Les rapports n'affichent jamais isolément un groupe de moins de {f.k} visiteurs."
                if f.k >= 2
                else ""
            ),
        ),
        h(3, "Vos choix et vos droits"),
        ul(
            (
                f"Si votre navigateur envoie un signal {signals}, vos visites ne sont pas "
                "enregistrées du tout."
                if signals
                else ""
            ),
            f"Vous pouvez vous opposer à la mesure sur cette page : [{f.optout_url}]"
            f"({f.optout_url}).",
            "Vous disposez d'un droit d'accès, de rectification, d'effacement, de limitation, "
            "d'opposition et de portabilité. Pour les utilisateurs de nos applications, nous "
            "pouvons retrouver, exporter et supprimer les données liées à votre identifiant "
            "d'appareil. Pour les visites web, nous ne conservons aucun identifiant que nous "
            "pourrions relier à vous (article 11 du RGPD) et ne pouvons donc pas isoler vos "
            "données ; sur demande, nous vous l'expliquons par écrit.",
            "Pour exercer ces droits, contactez-nous comme indiqué dans la section « Nous "
            "contacter ». Vous pouvez aussi introduire une réclamation auprès d'une autorité de "
            "contrôle, en Belgique l'Autorité de protection des données "
            "([www.autoriteprotectiondonnees.be](https://www.autoriteprotectiondonnees.be)).",
        ),
    ]


def dutch(f: Facts) -> list[Block]:
    sites = ", ".join(f.sites) or "onze websites"
    signals = _signals(f, "Global Privacy Control (GPC)", "Do Not Track (DNT)", " of ")
    return [
        h(2, "Bezoekersstatistieken"),
        p(
            f"Wij meten het bezoek aan {sites} met ons eigen analysesysteem, gehost "
            + ("op onze eigen servers" if f.local_store else "op systemen die wij beheren")
            + ". Geen enkele derde partij (zoals Google) ontvangt gegevens over uw bezoek; de "
            "gegevens worden niet verkocht, gedeeld of naar een ander land doorgegeven, en niet "
            "gebruikt voor reclame of om een profiel van u op te bouwen. Wij plaatsen "
            "hiervoor geen cookies en gebruiken geen andere opslag op uw toestel."
        ),
        h(3, "Welke gegevens wij verzamelen"),
        ul(
            "De pagina die u bezoekt, zonder de queryparameters (behalve de campagnelabels "
            "`utm_*`, `ref` en `source`). E-mailadressen, lange tokens en nummers die op "
            "identificatoren lijken, worden uit adressen verwijderd voordat ze worden "
            "opgeslagen.",
            "De website die u naar ons doorverwees (het adres zonder queryparameters) en "
            "campagnelabels.",
            f"Uw land{' en regio' if f.region else ''}, afgeleid uit uw IP-adres. Uw IP-adres "
            "zelf wordt niet bewaard"
            + (
                f"; alleen het netwerkdeel wordt bewaard (de eerste {f.v4} bits van een "
                f"IPv4-adres, de eerste {f.v6} bits van een IPv6-adres)."
                if f.keep_prefix
                else "."
            ),
            "Uw browser en besturingssysteem (naam en hoofdversie) en het type toestel "
            "(computer, mobiel, tablet), afgeleid uit de user agent van uw browser, die niet "
            "wordt bewaard.",
            "Het tijdstip van het bezoek, de tijd op de pagina, hoe ver u scrolt en de acties op "
            "de pagina die wij meten" + (f" (zoals: {', '.join(f.goals)})." if f.goals else "."),
            "Een bezoekerscode: een hash met sleutel van de website, uw IP-adres en uw user "
            "agent, berekend met een willekeurig geheim dat elke dag wordt vervangen en daarna "
            "vernietigd. Zo kunnen wij unieke bezoekers binnen een dag tellen; zodra het geheim "
            "is vernietigd, kan niemand, ook wij niet, de code nog aan u koppelen of aan uw "
            "bezoeken op andere dagen of websites.",
            "Alleen in onze apps: als de app een toestel-ID meestuurt, bewaren wij enkel een "
            f"hash met sleutel daarvan, met een sleutel die elke "
            f"{ROTATION_WORDS['nl'][f.rotation]} wordt vervangen en daarna vernietigd. De "
            "toestel-ID zelf wordt nooit bewaard.",
        ),
        h(3, "Waarom, en op welke grondslag"),
        p(
            "Om te weten hoe onze website wordt gebruikt en om hem te verbeteren. De "
            "rechtsgrond is ons gerechtvaardigd belang (artikel 6, lid 1, f) AVG). De meting is "
            "zo opgezet dat zij voldoet aan de voorwaarden waaronder bezoekersstatistieken "
            "zijn vrijgesteld van toestemming: alleen voor bezoekersstatistieken, geen volgen "
            "over websites heen, locatie niet nauwkeuriger dan uw "
            + ("regio" if f.region else "land")
            + ", beperkte bewaartermijn en de mogelijkheid om bezwaar te maken."
        ),
        h(3, "Hoe lang wij gegevens bewaren"),
        ul(
            f"Gedetailleerde bezoekgegevens: {f.raw_days} dagen, daarna worden ze automatisch "
            "verwijderd.",
            "Geaggregeerde statistieken (aantallen per pagina, bron, land, browser...; zonder "
            f"bezoekerscode): {f.aggregate_months} maanden.",
            (
                f"Rapporten tonen nooit afzonderlijk een groep van minder dan {f.k} bezoekers."
                if f.k >= 2
                else ""
            ),
        ),
        h(3, "Uw keuzes en rechten"),
        ul(
            (
                f"Als uw browser een {signals}-signaal verstuurt, worden uw bezoeken helemaal "
                "niet geregistreerd."
                if signals
                else ""
            ),
            f"U kunt de meting weigeren op deze pagina: [{f.optout_url}]({f.optout_url}).",
            "U hebt recht op inzage, rectificatie en wissing van uw gegevens, op beperking van "
            "en bezwaar tegen de verwerking, en op overdraagbaarheid. Voor gebruikers van onze "
            "apps kunnen wij de gegevens die aan uw toestel-ID gekoppeld zijn opzoeken, "
            "exporteren en wissen. Voor websitebezoeken bewaren wij geen identificator die wij "
            "aan u kunnen koppelen (artikel 11 AVG), zodat wij uw gegevens niet kunnen "
            "terugvinden; op verzoek lichten wij dit schriftelijk toe.",
            "Om deze rechten uit te oefenen, neemt u contact met ons op zoals beschreven in de "
            "rubriek Contact. U kunt ook een klacht indienen bij een toezichthoudende "
            "autoriteit, in België de Gegevensbeschermingsautoriteit "
            "([www.gegevensbeschermingsautoriteit.be]"
            "(https://www.gegevensbeschermingsautoriteit.be)).",
        ),
    ]


BUILDERS = {"en": english, "fr": french, "nl": dutch}
TITLES = {"en": "Analytics", "fr": "Mesure d'audience", "nl": "Bezoekersstatistieken"}


def notice(config: Config, lang: str = "en") -> list[Block]:
    if lang not in BUILDERS:
        raise ValueError(f"language must be one of {', '.join(LANGUAGES)}, got {lang!r}")
    return BUILDERS[lang](Facts.of(config))
