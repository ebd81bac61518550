"""Which SoundNet labels are plausible for each ESC-10 class: the yardstick of the real-clip tests and benchmarks.

SoundNet's heads name ImageNet objects and Places2 scenes, not ESC classes, so "a sensible answer" for a clip is
one whose top objects or scenes include something that could be *seen* where that sound is heard: a dog breed for
a barking dog, a beach for sea waves, a nursery for a crying baby. The lists were written from the class
definitions (ESC-50 paper) and the category names, before looking at any prediction, and are deliberately
generous only where the sound itself is ambiguous (water for rain, kitchens for crackling). Used by
``tests/test_real_clips.py`` and ``benchmarks/bench_short_clips.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

DOG_BREEDS = range(151, 269)
"""ImageNet class indices 151 (Chihuahua) to 268 (Mexican hairless): the dog breeds."""

PLAUSIBLE_OBJECTS: dict[str, tuple[str, ...]] = {
    "dog": ("dingo, warrigal, warragal, Canis dingo",),  # plus every breed in DOG_BREEDS
    "rooster": ("cock", "hen", "barn", "ostrich, Struthio camelus"),
    "rain": ("umbrella", "rain barrel", "shower curtain", "fountain", "window screen", "patio, terrace"),
    "sea_waves": (
        "seashore, coast, seacoast, sea-coast",
        "sandbar, sand bar",
        "promontory, headland, head, foreland",
        "breakwater, groin, groyne, mole, bulwark, seawall, jetty",
        "lakeside, lakeshore",
        "cliff, drop, drop-off",
        "catamaran",
        "trimaran",
        "speedboat",
        "lifeboat",
        "paddle, boat paddle",
        "snorkel",
        "swimming trunks, bathing trunks",
        "bikini, two-piece",
        "sarong",
        "liner, ocean liner",
        "schooner",
        "wreck",
    ),
    "crackling_fire": (
        "fire screen, fireguard",
        "stove",
        "frying pan, frypan, skillet",
        "wok",
        "Dutch oven",
        "caldron, cauldron",
        "volcano",
        "matchstick",
        "torch",
    ),
    "crying_baby": (
        "crib, cot",
        "cradle",
        "bassinet",
        "diaper, nappy, napkin",
        "bib",
        "teddy, teddy bear",
        "nipple",
        "pajama, pyjama, pj's, jammies",
        "rocking chair, rocker",
    ),
    "sneezing": (
        "handkerchief, hankie, hanky, hankey",
        "toilet tissue, toilet paper, bathroom tissue",
        "stethoscope",
        "pill bottle",
        "lab coat, laboratory coat",
        "medicine chest, medicine cabinet",
        "oxygen mask",
    ),
    "clock_tick": (
        "analog clock",
        "digital clock",
        "wall clock",
        "stopwatch, stop watch",
        "hourglass",
        "digital watch",
        "sundial",
    ),
    "helicopter": (
        "airliner",
        "warplane, military plane",
        "airship, dirigible",
        "wing",
        "aircraft carrier, carrier, flattop, attack aircraft carrier",
        "missile",
        "projectile, missile",
        "parachute, chute",
        "space shuttle",
    ),
    "chainsaw": (
        "chain saw, chainsaw",
        "lawn mower, mower",
        "hatchet",
        "power drill",
        "lumbermill, sawmill",
        "tractor",
        "harvester, reaper",
        "thresher, thrasher, threshing machine",
        "motor scooter, scooter",
        "moped",
        "go-kart",
        "snowmobile",
        "chain",
    ),
}

PLAUSIBLE_SCENES: dict[str, tuple[str, ...]] = {
    "dog": ("kennel/outdoor", "pet_shop", "veterinarians_office", "yard"),
    "rooster": ("farm", "barn", "barndoor", "corral", "pasture", "stable", "yard", "hayfield", "field/cultivated"),
    "rain": (
        "rainforest",
        "shower",
        "fountain",
        "waterfall/block",
        "waterfall/fan",
        "waterfall/plunge",
        "creek",
        "river",
        "porch",
        "patio",
        "veranda",
        "bamboo_forest",
        "forest/broadleaf",
        "swamp",
        "marsh",
    ),
    "sea_waves": (
        "ocean",
        "beach",
        "coast",
        "wave",
        "sea_cliff",
        "sandbar",
        "lagoon",
        "harbor",
        "pier",
        "boardwalk",
        "islet",
        "beach_house",
        "lighthouse",
        "boat_deck",
        "underwater/ocean_deep",
    ),
    "crackling_fire": (
        "campsite",
        "cabin/outdoor",
        "hunting_lodge/outdoor",
        "kitchen",
        "restaurant_kitchen",
        "galley",
        "volcano",
        "fire_station",
        "fire_escape",
    ),
    "crying_baby": (
        "nursery",
        "childs_room",
        "playroom",
        "kindergarden_classroom",
        "bedroom",
        "hospital_room",
        "nursing_home",
        "dorm_room",
    ),
    "sneezing": (
        "bedroom",
        "bathroom",
        "living_room",
        "office",
        "waiting_room",
        "hospital_room",
        "hospital",
        "classroom",
        "lavatory",
        "television_room",
    ),
    "clock_tick": ("tower", "office", "home_office", "living_room", "bedroom", "library/indoor"),
    "helicopter": (
        "heliport",
        "airfield",
        "runway",
        "airport_terminal",
        "hangar/indoor",
        "hangar/outdoor",
        "landing_deck",
        "cockpit",
        "army_base",
        "sky",
        "airplane_cabin",
    ),
    "chainsaw": (
        "construction_site",
        "forest_road",
        "forest/broadleaf",
        "forest_path",
        "woodland",
        "tree_farm",
        "shed",
        "yard",
        "lawn",
        "repair_shop",
        "garage/indoor",
    ),
}

ESC10_CLASSES = tuple(PLAUSIBLE_OBJECTS)


def plausible_labels(category: str, object_names: Sequence[str]) -> set[str]:
    """Every object and scene name that is a sensible answer for a clip of ESC-10 class ``category``."""
    if category not in PLAUSIBLE_OBJECTS:
        raise KeyError(f"not an ESC-10 class: {category!r} (expected one of {', '.join(ESC10_CLASSES)})")
    names = set(PLAUSIBLE_OBJECTS[category]) | set(PLAUSIBLE_SCENES[category])
    if category == "dog":
        names |= {object_names[i] for i in DOG_BREEDS}
    return names


def is_plausible(category: str, top_labels: Iterable[str], object_names: Sequence[str]) -> bool:
    """Whether any of ``top_labels`` (e.g. the top-5 objects and top-5 scenes of a clip) fits ``category``."""
    return bool(plausible_labels(category, object_names) & set(top_labels))
