"""Class names and CLIP class strings of the real datasets (spec §4.6, the reference's ``Domain2Dict``).

The CLIP strings carry the reference's domain prefix ("food, steak", "flower, sweet pea"), because the
published CLIP-Illusion images were generated with them (spec bug 24 notes the prefix; it is kept for
parity). :func:`prompts_for` returns the list for a domain key, in label order.
"""

from __future__ import annotations

# Oxford-102 flower names in label order (label = imagelabels.mat value − 1), as the reference writes
# them. torchvision's list differs in two entries: it has "pink-yellow dahlia?" (59) and "lotus" (77);
# the reference (and the original CLIP prompt list) use "pink-yellow dahlia" and "lotus lotus".
FLOWERS102: tuple[str, ...] = (
    "pink primrose", "hard-leaved pocket orchid", "canterbury bells", "sweet pea", "english marigold",
    "tiger lily", "moon orchid", "bird of paradise", "monkshood", "globe thistle",
    "snapdragon", "colt's foot", "king protea", "spear thistle", "yellow iris",
    "globe-flower", "purple coneflower", "peruvian lily", "balloon flower", "giant white arum lily",
    "fire lily", "pincushion flower", "fritillary", "red ginger", "grape hyacinth",
    "corn poppy", "prince of wales feathers", "stemless gentian", "artichoke", "sweet william",
    "carnation", "garden phlox", "love in the mist", "mexican aster", "alpine sea holly",
    "ruby-lipped cattleya", "cape flower", "great masterwort", "siam tulip", "lenten rose",
    "barbeton daisy", "daffodil", "sword lily", "poinsettia", "bolero deep blue",
    "wallflower", "marigold", "buttercup", "oxeye daisy", "common dandelion",
    "petunia", "wild pansy", "primula", "sunflower", "pelargonium",
    "bishop of llandaff", "gaura", "geranium", "orange dahlia", "pink-yellow dahlia",
    "cautleya spicata", "japanese anemone", "black-eyed susan", "silverbush", "californian poppy",
    "osteospermum", "spring crocus", "bearded iris", "windflower", "tree poppy",
    "gazania", "azalea", "water lily", "rose", "thorn apple",
    "morning glory", "passion flower", "lotus lotus", "toad lily", "anthurium",
    "frangipani", "clematis", "hibiscus", "columbine", "desert-rose",
    "tree mallow", "magnolia", "cyclamen", "watercress", "canna lily",
    "hippeastrum", "bee balm", "ball moss", "foxglove", "bougainvillea",
    "camellia", "mallow", "mexican petunia", "bromelia", "blanket flower",
    "trumpet creeper", "blackberry lily",
)  # fmt: skip

# Food-101 class folder names, sorted as Python sorts them ("cheese_plate" < "cheesecake"): the order
# of ``sorted(train.json keys)``, i.e. the label order of the reference (steak = 93).
FOOD101: tuple[str, ...] = (
    "apple_pie", "baby_back_ribs", "baklava", "beef_carpaccio", "beef_tartare",
    "beet_salad", "beignets", "bibimbap", "bread_pudding", "breakfast_burrito",
    "bruschetta", "caesar_salad", "cannoli", "caprese_salad", "carrot_cake",
    "ceviche", "cheese_plate", "cheesecake", "chicken_curry", "chicken_quesadilla",
    "chicken_wings", "chocolate_cake", "chocolate_mousse", "churros", "clam_chowder",
    "club_sandwich", "crab_cakes", "creme_brulee", "croque_madame", "cup_cakes",
    "deviled_eggs", "donuts", "dumplings", "edamame", "eggs_benedict",
    "escargots", "falafel", "filet_mignon", "fish_and_chips", "foie_gras",
    "french_fries", "french_onion_soup", "french_toast", "fried_calamari", "fried_rice",
    "frozen_yogurt", "garlic_bread", "gnocchi", "greek_salad", "grilled_cheese_sandwich",
    "grilled_salmon", "guacamole", "gyoza", "hamburger", "hot_and_sour_soup",
    "hot_dog", "huevos_rancheros", "hummus", "ice_cream", "lasagna",
    "lobster_bisque", "lobster_roll_sandwich", "macaroni_and_cheese", "macarons", "miso_soup",
    "mussels", "nachos", "omelette", "onion_rings", "oysters",
    "pad_thai", "paella", "pancakes", "panna_cotta", "peking_duck",
    "pho", "pizza", "pork_chop", "poutine", "prime_rib",
    "pulled_pork_sandwich", "ramen", "ravioli", "red_velvet_cake", "risotto",
    "samosa", "sashimi", "scallops", "seaweed_salad", "shrimp_and_grits",
    "spaghetti_bolognese", "spaghetti_carbonara", "spring_rolls", "steak", "strawberry_shortcake",
    "sushi", "tacos", "takoyaki", "tiramisu", "tuna_tartare",
    "waffles",
)  # fmt: skip

WATERBIRDS: tuple[str, ...] = ("landbird", "waterbird")
WATERBIRDS_PROMPTS: tuple[str, ...] = ("landbird", "waterbird, aquatic bird")
WATERBIRDS_PLACES: tuple[str, ...] = ("land", "water")
# group g = 2·y + place (spec §6.1)
WATERBIRDS_GROUPS: tuple[str, ...] = tuple(f"{c}/{p}" for c in WATERBIRDS for p in WATERBIRDS_PLACES)

# NeuroInspect's MetaShift scenarios use these five classes in this label order (spec §7).
METASHIFT_CCE: tuple[str, ...] = ("bear", "bird", "cat", "dog", "elephant")
METASHIFT_CATDOG: tuple[str, ...] = ("cat", "dog")


def flower_prompt(name: str) -> str:
    """``"sweet pea"`` → ``"flower, sweet pea"``."""
    return f"flower, {name}"


def food_prompt(folder: str) -> str:
    """``"hot_and_sour_soup"`` → ``"food, hot and sour soup"``."""
    return "food, " + folder.replace("_", " ")


def scene_prompt(cls: str) -> str:
    """The reference's MetaShift ("spurious" domain) string: ``"elephant"`` → ``"scene with an elephant or elephants"``."""
    article = "an" if cls[:1].lower() in "aeiou" else "a"
    return f"scene with {article} {cls} or {cls}s"


FLOWERS102_PROMPTS: tuple[str, ...] = tuple(flower_prompt(n) for n in FLOWERS102)
FOOD101_PROMPTS: tuple[str, ...] = tuple(food_prompt(n) for n in FOOD101)
METASHIFT_CCE_PROMPTS: tuple[str, ...] = tuple(scene_prompt(c) for c in METASHIFT_CCE)

DOMAIN_PROMPTS: dict[str, tuple[str, ...]] = {
    "flowers": FLOWERS102_PROMPTS,
    "food": FOOD101_PROMPTS,
    "waterbird": WATERBIRDS_PROMPTS,
    "spurious": METASHIFT_CCE_PROMPTS,
}


def prompts_for(domain: str) -> list[str]:
    """The CLIP class strings of a spec §4.6 domain key (``flowers``, ``food``, ``waterbird``, ``spurious``)."""
    from neuroinspect.errors import UserError

    if domain not in DOMAIN_PROMPTS:
        raise UserError(f"unknown class-string domain {domain!r}; choose one of {', '.join(DOMAIN_PROMPTS)}.")
    return list(DOMAIN_PROMPTS[domain])


__all__ = [
    "DOMAIN_PROMPTS",
    "FLOWERS102",
    "FLOWERS102_PROMPTS",
    "FOOD101",
    "FOOD101_PROMPTS",
    "METASHIFT_CATDOG",
    "METASHIFT_CCE",
    "METASHIFT_CCE_PROMPTS",
    "WATERBIRDS",
    "WATERBIRDS_GROUPS",
    "WATERBIRDS_PLACES",
    "WATERBIRDS_PROMPTS",
    "food_prompt",
    "flower_prompt",
    "prompts_for",
    "scene_prompt",
]
