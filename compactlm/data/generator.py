"""A seeded, bundled generator of a synthetic customer-support instruction dataset.

The rows imitate the Bitext customer-support dataset: a customer ``instruction``, an agent
``response``, an ``intent`` and its ``category``, with Bitext-style entity placeholders such as
``{{Order Number}}``. It exists so the pipeline runs offline and in CI, so responses are deliberately
formulaic per intent: a ~1M-parameter model trained for a few minutes on CPU can learn them, and its
ROUGE-L rises measurably with training.

Each row also carries customer attributes and a ``resolved`` outcome. With ``bias > 0`` one group's
resolution probability is scaled down, which lets the pipeline demonstrate that the fairness audit
catches an injected disparity; with ``bias = 0`` the outcome is independent of the attributes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from numbers import Integral, Real

import numpy as np
import pandas as pd

from compactlm.errors import DataError

__all__ = ["ATTRIBUTES", "CATEGORIES", "INTENTS", "STYLES", "generate_support_dataset"]

# intent -> (category, first-contact resolution rate, relative frequency)
_INTENT_TABLE: dict[str, tuple[str, float, float]] = {
    "cancel_order": ("ORDER", 0.82, 1.3),
    "change_order": ("ORDER", 0.74, 1.0),
    "place_order": ("ORDER", 0.90, 1.1),
    "track_order": ("ORDER", 0.86, 1.3),
    "change_shipping_address": ("SHIPPING", 0.76, 0.9),
    "set_up_shipping_address": ("SHIPPING", 0.88, 0.8),
    "delivery_options": ("DELIVERY", 0.90, 0.8),
    "delivery_period": ("DELIVERY", 0.84, 1.0),
    "report_missing_package": ("DELIVERY", 0.62, 0.9),
    "check_refund_policy": ("REFUND", 0.90, 0.8),
    "get_refund": ("REFUND", 0.66, 1.2),
    "track_refund": ("REFUND", 0.72, 1.0),
    "create_account": ("ACCOUNT", 0.89, 0.9),
    "delete_account": ("ACCOUNT", 0.80, 0.8),
    "edit_account": ("ACCOUNT", 0.87, 0.8),
    "reset_password": ("ACCOUNT", 0.85, 1.2),
    "switch_account": ("ACCOUNT", 0.83, 0.7),
    "registration_problems": ("ACCOUNT", 0.70, 0.8),
    "check_payment_methods": ("PAYMENT", 0.90, 0.9),
    "payment_issue": ("PAYMENT", 0.60, 1.1),
    "update_payment_method": ("PAYMENT", 0.86, 0.8),
    "check_invoice": ("INVOICE", 0.87, 0.8),
    "get_invoice": ("INVOICE", 0.88, 0.9),
    "check_cancellation_fee": ("CANCEL", 0.85, 0.7),
    "contact_customer_service": ("CONTACT", 0.88, 1.0),
    "contact_human_agent": ("CONTACT", 0.78, 1.0),
    "complaint": ("FEEDBACK", 0.60, 1.0),
    "review": ("FEEDBACK", 0.90, 0.7),
    "return_item": ("RETURN", 0.76, 1.1),
    "exchange_item": ("RETURN", 0.72, 0.8),
    "newsletter_subscription": ("SUBSCRIPTION", 0.90, 0.7),
    "cancel_subscription": ("SUBSCRIPTION", 0.80, 1.0),
    "upgrade_plan": ("SUBSCRIPTION", 0.86, 0.8),
}

INTENTS: dict[str, str] = {intent: row[0] for intent, row in _INTENT_TABLE.items()}
CATEGORIES: tuple[str, ...] = tuple(dict.fromkeys(INTENTS.values()))
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "age_band": ("18-29", "30-44", "45-64", "65+"),
    "region": ("north", "south", "east", "west"),
    "customer_tier": ("standard", "premium"),
}
STYLES: tuple[str, ...] = ("plain", "polite", "colloquial", "terse", "long", "question", "typo")

# Mildly uneven, like a real customer base; drawn independently of the intent so that, without
# injected bias, the outcome cannot correlate with any attribute.
_ATTRIBUTE_WEIGHTS: dict[str, tuple[float, ...]] = {
    "age_band": (0.28, 0.30, 0.27, 0.15),
    "region": (0.27, 0.23, 0.26, 0.24),
    "customer_tier": (0.75, 0.25),
}
_STYLE_WEIGHTS = (0.20, 0.14, 0.14, 0.10, 0.14, 0.16, 0.12)

# Concrete fills for <slot> markers; one value per slot is drawn per row and shared by the
# instruction and the response, so the response can echo what the customer said. Every product and
# colour takes the article "a"; half the product mentions carry a colour.
_PRODUCTS = (
    "coffee maker", "laptop stand", "yoga mat", "desk lamp", "backpack", "smart watch", "phone case",
    "blender", "winter jacket", "bluetooth speaker", "gaming mouse", "water bottle", "desk chair",
    "rice cooker", "standing desk", "toaster", "vacuum cleaner", "keyboard", "monitor", "kettle",
    "digital camera", "fitness tracker", "table fan", "pillow set", "router", "printer", "tent",
    "baby stroller",
)
_COLOURS = ("black", "white", "blue", "grey", "red", "green")
_SLOTS: dict[str, tuple[str, ...]] = {
    "product": _PRODUCTS * len(_COLOURS) + tuple(f"{c} {p}" for c in _COLOURS for p in _PRODUCTS),
    "payment": ("credit card", "debit card", "PayPal", "bank transfer", "Apple Pay", "Google Pay",
                "gift card", "store credit"),
    "carrier": ("UPS", "FedEx", "DHL", "USPS", "the postal service", "the local courier"),
    "when": ("yesterday", "last week", "two days ago", "on Monday", "this morning", "a few days ago",
             "last month", "over the weekend", "three days ago", "earlier today", "on Friday"),
    "plan": ("basic", "premium", "family", "business", "student", "pro", "plus", "gold", "starter", "team"),
    "speed": ("express", "standard", "next-day", "same-day", "economy", "overnight"),
    "device": ("phone", "laptop", "tablet", "desktop", "work computer", "new phone", "iPad", "iPhone",
               "Android phone", "home computer", "Chromebook"),
}

# Per intent: a [header]; "= " cores, verb phrases that every statement and question frame below
# accepts (as Bitext composes its data, and it multiplies the distinct instructions); whole
# instruction templates (questions end in "?"); then responses, each opened by "> " and continued on
# indented lines. Every instruction template holds a concrete <slot>, or it would repeat verbatim. A
# response only uses a <slot> that all of its intent's templates mention, so it never names something
# the customer did not say.
_TEMPLATE_TEXT = """
[cancel_order]
= cancel the <product> I ordered <when>
= cancel order {{Order Number}} for the <product>
= cancel my <product> order before it ships
I changed my mind about the <product> and want to cancel order {{Order Number}}
I ordered the wrong <product>, please cancel it
is it still possible to cancel my <product> order?
> I understand you would like to cancel your order for the <product>. Please sign in to {{Online Company
  Portal Info}}, open {{Online Order Interaction}} and choose Cancel Order next to order {{Order Number}}. If
  the item has already shipped, you can return it instead and we will refund you in full.
> I'm sorry the <product> didn't work out, and I can help you cancel it. Go to {{Online Order Interaction}} on
  {{Website URL}}, select order {{Order Number}} and click Cancel. You will receive a confirmation email once
  the cancellation is processed.
[change_order]
= change the <product> in order {{Order Number}}
= add a <product> to the order I placed <when>
= edit the order I placed <when>
I ordered the wrong size <product> and need to change it before it ships
is it too late to swap the <product> in my order?
> I can help you update your order. Orders can be changed in {{Online Order Interaction}} until they are
  packed, usually within a few hours of purchase. If the change option is no longer available, please contact
  us during {{Customer Support Hours}} and we will update order {{Order Number}}.
> Thanks for letting us know about the change to your order. Please open order {{Order Number}} on {{Website
  URL}} and select Edit Order to adjust items or quantities. If the order is already being prepared, our team
  at {{Customer Support Phone Number}} can still help.
[place_order]
= buy a <product>
= place an order for a <product> and pay with <payment>
= order a <product> with <speed> shipping
do you have the <product> in stock? I want to order one today
I'd like a <product>, how do I order it?
> Thank you for choosing to shop with us! To order a <product>, add it to your cart on {{Website URL}}, go to
  checkout and enter your shipping details. Then pick your payment method and confirm the purchase, and you
  will get an order number right away.
> I'd be glad to help you buy a <product>. Simply search for it on {{Website URL}}, click Add to Cart and
  follow the checkout steps. If you run into any trouble, our team is available during {{Customer Support
  Hours}} at {{Customer Support Phone Number}}.
[track_order]
= track the <product> I ordered <when>
= track order {{Order Number}} shipped with <carrier>
= check the status of my <product> delivery
where is the <product> I ordered <when>?
my <product> still hasn't arrived, it was shipped with <carrier>
> I understand you're eager to get your order. You can follow your package in {{Online Order Interaction}} on
  {{Website URL}} by entering order number {{Order Number}}. The tracking page shows the current location and
  the estimated delivery date.
> Thanks for checking in about your order. Open {{Order Tracking}} on our website and enter {{Order Number}}
  to see live updates from the carrier. If the status has not changed for more than three days, please contact
  us during {{Customer Support Hours}}.
[change_shipping_address]
= change the shipping address for my <product> order
= update the delivery address on the order I placed <when>
= send the <product> from order {{Order Number}} to a new address
I moved <when> and my <product> order still has the old address
is it too late to change where my <product> is delivered?
> I can help you update your shipping address. Go to {{Online Order Interaction}}, select order {{Order
  Number}} and click Change Address before the order ships. Once the package is with the carrier, please call
  {{Customer Support Phone Number}} so we can try to redirect it.
> No problem, the delivery address can be changed as long as the order has not shipped yet. Sign in to
  {{Website URL}}, open {{Profile}}, choose the order and enter {{Delivery Address}}, then save. You will
  receive a confirmation once the new address is applied.
[set_up_shipping_address]
= add a new shipping address on my <device>
= set up a delivery address before I order a <product>
= save a second shipping address in my <plan> account
my <product> went to my old place <when>, I need a new default address
can I save more than one shipping address in my <plan> account on my <device>?
> Setting up a shipping address only takes a minute. Sign in to {{Website URL}}, go to {{Profile}} and open
  the Addresses section, then click Add New Address and fill in {{Delivery Address}}. You can mark it as your
  default address for all future orders.
> I'd be happy to help you add a shipping address. Open {{Settings}} in your account, choose Shipping
  Addresses and select Add Address. Save the details and the new address will be available at checkout.
[delivery_options]
= find out which delivery options you offer for a <product>
= get my <product> with <speed> delivery
= ship a <product> with <carrier>
I need my <product> fast, tell me about <speed> shipping
do you offer <speed> delivery for a <product> to {{Delivery City}}?
> We offer several delivery options, including standard, express and next-day shipping. You can see the
  options available for your address and their prices at checkout on {{Website URL}}. Every order is shipped
  with a trusted carrier and includes tracking.
> Thanks for asking about delivery. Standard shipping usually takes 3 to 5 business days, while express and
  next-day delivery are available for most items at an extra cost. The exact options for {{Delivery City}} are
  shown at checkout.
[delivery_period]
= find out when my <product> will arrive
= know the delivery date for the <product> I ordered <when>
= check how long <speed> shipping takes for a <product>
how long will it take to get my <product> with <carrier>?
when will my <product> arrive with <speed> shipping?
> I understand you want to know when your order will arrive. Standard orders usually arrive within 3 to 5
  business days and express orders within 1 to 2 business days. You can see the exact estimate for order
  {{Order Number}} in {{Online Order Interaction}}.
> Thanks for your patience. The estimated delivery date is shown in your confirmation email and on the
  tracking page for order {{Order Number}}. If your package has not arrived by that date, please contact us
  during {{Customer Support Hours}}.
[report_missing_package]
= report that my <product> never arrived
= find the package <carrier> lost <when>
= report the missing <product> from order {{Order Number}}
my <carrier> package never arrived, the tracking said delivered <when>
I didn't receive my <product> even though <carrier> marked it as delivered
the tracking says delivered but where is my <product>?
> I'm sorry your package hasn't reached you. Please check with neighbours and around your door, as carriers
  sometimes leave parcels in a safe place. If you still can't find it, report it in {{Online Order
  Interaction}} for order {{Order Number}} and we will open an investigation.
> I apologize for the trouble with your delivery. We will contact the carrier and open a trace for order
  {{Order Number}}, which usually takes up to 3 business days. If the package is not found, we will send a
  replacement or issue a full refund.
[check_refund_policy]
= read your refund policy for a <product>
= find out if I can get my money back for a <product>
= check the refund rules for items paid with <payment>
can I get a refund if I don't like the <product>?
how many days do I have to ask for a refund on a <product>?
> Our refund policy lets you request a full refund within 30 days of delivery, as long as the item is unused
  and in its original packaging. Refunds go back to your original payment method. You can read the full policy
  at {{Website URL}}.
> Thanks for asking about our refund policy. Most items can be returned for a full refund within 30 days, and
  the money usually reaches your account within 5 to 10 business days. Some items, such as gift cards, are not
  refundable.
[get_refund]
= get a refund for the <product> I bought <when>
= get reimbursed for the <product>
= request a refund for my <product>
I need my money back for order {{Order Number}}, the <product> arrived damaged
please refund the {{Refund Amount}} I paid for the <product>
> I'm sorry the <product> didn't meet your expectations. To request a refund, go to {{Online Order
  Interaction}}, select order {{Order Number}} and choose Request Refund. Once we receive the item back,
  {{Refund Amount}} will be returned to your original payment method within 5 to 10 business days.
> I understand you would like a refund for the <product>, and I'm here to help. Please submit a refund request
  on {{Website URL}} with order number {{Order Number}} and a short description of the problem. Our team will
  review it within 2 business days and confirm the amount by email.
[track_refund]
= check the status of my refund for the <product>
= find out when I will get my refund for the <product>
= track my <payment> refund for order {{Order Number}}
I returned a <product> <when> and still haven't got my money
how long does a refund for a <product> to my <payment> take?
> I understand you're waiting for your refund. Refunds are processed within 2 business days after we receive
  the item, and your bank may need another 3 to 5 days to show it. You can follow the refund for order {{Order
  Number}} in {{Online Order Interaction}}.
> Thanks for your patience while we process your refund. The status page at {{Website URL}} will show when
  {{Refund Amount}} has been sent. If it has been more than 10 business days, please call {{Customer Support
  Phone Number}}.
[create_account]
= create a <plan> account on my <device>
= sign up for a new account on my <device>
= register a <plan> account
I'm new here and want a <plan> account for my <device>
where can I sign up for a <plan> account on my <device>?
> Welcome, and thanks for your interest in joining us! To create your account, go to {{Website URL}}, click
  Sign Up and enter your name, email address and a secure password. After you confirm your email, you can
  choose {{Account Type}} in {{Settings}} at any time.
> I'd be happy to help you create an account. Open our app or {{Website URL}}, select Register and fill in the
  short form. You will receive a verification email, and once you confirm it your account is ready to use.
[delete_account]
= delete my <plan> account
= remove my account and all my data from my <device>
= close the <plan> account I opened <when>
please close my <plan> account, I opened it by mistake <when>
I don't use my <plan> account on my <device> anymore, please delete it
> I'm sorry to see you go. To delete your account, sign in to {{Website URL}}, open {{Settings}} and select
  Close Account, then confirm your choice. Please note that this permanently removes your order history and
  saved details.
> I understand you'd like to close your account. You can do this yourself under {{Profile}} by choosing Delete
  Account, or our team can do it for you during {{Customer Support Hours}}. Any active subscriptions will be
  cancelled at the same time.
[edit_account]
= change the name on my <plan> account
= update my profile details on my <device>
= edit the personal information in my <plan> account
I moved <when> and my profile still shows the old details
where can I change my personal information on my <device>?
> Keeping your details up to date is easy. Sign in to {{Website URL}}, go to {{Profile}} and click Edit next
  to the information you want to change. Don't forget to save your changes before leaving the page.
> I can help you update your account information. Open {{Settings}} in the app or on the website, choose
  Personal Details and make your changes. Some changes, like a new email address, need to be confirmed with a
  verification link.
[reset_password]
= reset the password for my <plan> account
= recover my password on my <device>
= change my password, I think someone used it <when>
I forgot my password and can't log in on my <device>
my password stopped working on my <device> <when>
why can't I log in to my <plan> account on my <device>?
> I'm sorry you're having trouble signing in. Go to {{Website URL}}, click Forgot Password and enter the email
  address linked to your account. You'll receive a reset link within a few minutes, so please check your spam
  folder too.
> No worries, resetting your password is quick. On the sign-in page, select Reset Password and follow the
  instructions sent to your email. If the link doesn't arrive, contact us during {{Customer Support Hours}}
  and we'll help you get back in.
[switch_account]
= switch from my <plan> account to a different one
= switch between my accounts on my <device>
= move my profile to a <plan> account
I need to change to another account type on my <device>
can I change my {{Account Type}} account to a <plan> one on my <device>?
> I can help you switch accounts. Go to {{Settings}}, open Account Type and choose the account you want to
  use, then confirm the change. Your order history and saved addresses will stay with your profile.
> Switching to a different account is simple. Sign in to {{Website URL}}, open {{Profile}} and select Switch
  Account, then follow the steps on the screen. If you need help choosing the right option, our team is
  available at {{Customer Support Phone Number}}.
[registration_problems]
= fix the error I get when I register on my <device>
= finish signing up for a <plan> account
= sign up on my <device> without getting an error
I tried to create an account <when> but it failed on my <device>
why can't I register a <plan> account on my <device>?
> I'm sorry you're running into trouble with registration. Please make sure all required fields are filled in
  and that your password meets the requirements shown on the form. If the error continues, try another browser
  or contact us during {{Customer Support Hours}}.
> Thanks for letting us know about the sign-up problem. Clearing your browser cache or updating the app
  usually fixes registration errors. If it still fails, send us a screenshot through {{Website URL}} and we'll
  finish the registration for you.
[check_payment_methods]
= find out which payment methods you accept for a <product>
= pay for my <product> with <payment>
= use <payment> on my <device>
do you accept <payment> for a <product>?
what payment methods can I use for a <product>?
> We accept several payment methods, including credit and debit cards, PayPal, Apple Pay, Google Pay and bank
  transfer. You can see all available options at checkout on {{Website URL}}. Gift cards can also be combined
  with any other method.
> Thanks for asking about payment options! Most major cards, digital wallets and bank transfers are accepted,
  and the full list is shown at checkout. If you have questions about a specific method, our team can help
  during {{Customer Support Hours}}.
[payment_issue]
= fix a <payment> payment that keeps failing
= get help with the <payment> payment I made <when>
= sort out a double charge for my <product> order
I was charged twice for my <product> order
my payment for the <product> failed <when>
why was my <payment> declined when I bought a <product>?
> I'm sorry you're having trouble with your payment. Please check that your card details and billing address
  are correct and that the card has enough funds. If the payment still fails, contact your bank or reach us at
  {{Customer Support Phone Number}} so we can look into order {{Order Number}}.
> I understand how frustrating payment problems can be. Our billing team will review the transaction for order
  {{Order Number}}, and any duplicate charge is refunded automatically within 5 business days. You can follow
  the status in {{Online Order Interaction}}.
[update_payment_method]
= update my payment method to <payment>
= change the card on my <plan> account
= replace my old <payment> with a new one
= update my billing details on my <device>
I got a new card <when> and need to update my billing details on my <device>
can I switch my saved payment to <payment> on my <device>?
> I can help you update your payment method. Sign in to {{Website URL}}, open {{Settings}} and go to Payment
  Methods, then add the new method and set it as default. You can remove the old one from the same page.
> Updating your payment details is quick. In {{Profile}}, select Billing, click Add Payment Method and enter
  the new details. The new method will be used for all future orders and renewals.
[check_invoice]
= see the invoice for my <product>
= check invoice {{Invoice Number}} for the <product>
= review the bill for the order I placed <when>
the invoice for my <product> looks wrong
where can I find my invoice for the <product> I bought <when>?
> You can view all your invoices in your account. Sign in to {{Website URL}}, open {{Online Order
  Interaction}} and select the order to see invoice {{Invoice Number}}. From there you can also check the
  items, taxes and payment details.
> I'd be happy to help you find your invoice. Go to {{Profile}}, choose Billing History and open invoice
  {{Invoice Number}} to review it. If anything on the invoice looks wrong, please contact us during {{Customer
  Support Hours}}.
[get_invoice]
= get a copy of the invoice for my <product>
= download the invoice for the order I placed <when>
= get a PDF of my invoice on my <device>
please send me invoice {{Invoice Number}} for the <product>
can you email me the invoice for the <product> I bought <when>?
> Sure, getting a copy of your invoice is easy. Go to {{Online Order Interaction}}, select order {{Order
  Number}} and click Download Invoice to save it as a PDF. You can also request it by email from the same
  page.
> I can help you get your invoice. Sign in to {{Website URL}}, open Billing History in {{Profile}} and choose
  invoice {{Invoice Number}}, then select Download. If you need the invoice in a company name, contact us at
  {{Customer Support Phone Number}}.
[check_cancellation_fee]
= find out if there is a fee to cancel my <plan> plan
= check the cancellation fee before I cancel my <product> order
= see how much it costs to cancel my <plan> subscription
do you charge anything to cancel an order for a <product>?
is there a fee if I cancel the <product> I ordered <when>?
> I understand you want to know about cancellation fees before making a decision. Orders can be cancelled for
  free before they ship, while ending a plan early may include a fee of {{Cancellation Fee}}. You can see the
  exact amount in {{Settings}} under Subscription.
> Thanks for checking before you cancel. Our cancellation policy on {{Website URL}} lists all fees, and most
  cancellations within 14 days are free of charge. If a fee applies to you, it will be shown as {{Cancellation
  Fee}} before you confirm.
[contact_customer_service]
= contact customer service about my <product>
= talk to support about the order I placed <when>
= reach customer support about my <payment> payment
I need to speak with customer service about the <product> I ordered <when>
I have a question about my <product>, what are your customer service hours?
> We're here to help! You can reach our customer service team during {{Customer Support Hours}} by calling
  {{Customer Support Phone Number}} or by using the live chat on {{Website URL}}. Our team usually replies
  within a few minutes.
> Thanks for reaching out. Our support team is available during {{Customer Support Hours}}, and you can
  contact them by phone at {{Customer Support Phone Number}} or through the contact form on {{Website URL}}.
  Please have your order number ready so we can help you faster.
[contact_human_agent]
= speak to a real person about my <product>
= talk to a human agent about the <product> I ordered <when>
= reach a live agent about the <payment> payment I made <when>
connect me with a live agent, the bot isn't helping with my <product>
is there a real person I can talk to about the <payment> charge for my <product>?
> I understand you'd like to speak with one of our agents. I'm transferring you now, and the next available
  agent will join the chat shortly. You can also call {{Customer Support Phone Number}} during {{Customer
  Support Hours}}.
> Of course, I'll connect you with a member of our team. The current waiting time is a few minutes, so please
  stay in this chat. If you prefer, you can request a call back on {{Website URL}}.
[complaint]
= file a complaint about my <product>
= complain about the <carrier> delivery of my <product>
= report the bad service I got <when>
I'm very unhappy with how my <product> order was handled <when>
why was your support so bad when I called about my <product>?
> I'm really sorry about your experience, and thank you for telling us. I've recorded your complaint and
  passed it to our customer care team, who will contact you within 2 business days. You can also follow up at
  {{Customer Support Phone Number}}.
> I apologize for the trouble this has caused you. Your feedback is important to us, so please share the
  details through the complaint form on {{Website URL}}. A member of our team will review it and get back to
  you as soon as possible.
[review]
= leave a review for the <product>
= rate the <product> I bought <when>
= share feedback about the <carrier> delivery
I want to say how much I love my new <product>
where can I write a review for the <product>?
> Thank you for taking the time to share your feedback! You can leave a review on the product page at
  {{Website URL}} or from {{Online Order Interaction}} after delivery. Your reviews help other customers and
  help us improve.
> We really appreciate you wanting to share your opinion. Go to your order history, select the item and click
  Write a Review to rate it. Every review is read by our team, and it helps other shoppers choose.
[return_item]
= return the <product> I bought <when>
= send back a <product> that doesn't work
= get a return label for my <product>
I'd like to return order {{Order Number}}, the <product> is not what I expected
can I still return the <product> I received <when>?
> I'm sorry the <product> didn't work out for you. To start a return, open {{Online Order Interaction}},
  select order {{Order Number}} and choose Return Item to print a free return label. Once we receive the
  <product>, your refund will be processed within 5 business days.
> I can help you return the <product>. Items can be returned within 30 days in their original packaging, and
  you can create a return label at {{Website URL}}. Drop the package off with the carrier and keep the receipt
  until your refund arrives.
[exchange_item]
= exchange my <product> for a different color
= swap the <product> I got <when> for another size
= exchange the <product> from order {{Order Number}} for a different model
the <product> I got <when> is the wrong size, I want a different one
can I exchange a <product> instead of returning it?
> Of course, I can help you exchange the <product>. Go to {{Online Order Interaction}}, select order {{Order
  Number}} and choose Exchange Item, then pick the new size, color or model. We'll send the replacement as
  soon as the original is on its way back to us.
> I understand the <product> isn't quite right. Exchanges are free within 30 days, and you can start one at
  {{Website URL}} by choosing the item you want instead. If the new item costs more, the difference is charged
  to your original payment method.
[newsletter_subscription]
= subscribe to your newsletter about <product> deals
= stop getting newsletter emails on my <device>
= sign up for news about new <product> models
I get too many newsletter emails on my <device>, please unsubscribe me
is there a newsletter with <product> deals I can join?
> You can manage your newsletter subscription in {{Settings}} under Communication Preferences. Tick the box to
  subscribe or untick it to stop receiving our emails, then save your changes. Updates may take up to 48 hours
  to apply.
> Thanks for your interest in our newsletter! Enter your email address at the bottom of {{Website URL}} and
  click Subscribe, or use the Unsubscribe link at the end of any newsletter to opt out. You can change this at
  any time.
[cancel_subscription]
= cancel my <plan> subscription
= stop my monthly <plan> plan before it renews
= end my <plan> membership on my <device>
I stopped using my <plan> plan <when>, please cancel it
will I get charged again if I cancel my <plan> subscription on my <device>?
> I'm sorry to see you go. To cancel your subscription, open {{Settings}}, go to Subscription and select
  Cancel Plan, then confirm. You will keep access to your plan until the end of the current billing period.
> I can help you cancel your subscription. Sign in to {{Website URL}}, open {{Profile}} and choose Manage
  Subscription, then click Cancel. You won't be charged again after the current period ends.
[upgrade_plan]
= upgrade to the <plan> plan
= move from my current plan to <plan>
= upgrade my account on my <device>
I need more features on my <device>, please upgrade me to <plan>
how much does the <plan> plan cost, and can I upgrade on my <device>?
> Great choice! To upgrade your plan, go to {{Settings}}, open Subscription and select the plan you want, then
  confirm the change. The new features are available right away, and the price difference is added to your
  next bill.
> I'd be happy to help you upgrade. Visit {{Website URL}}, choose Plans in {{Profile}} and click Upgrade next
  to the plan you like. You can compare all plan features on the same page before you decide.
"""

_STATEMENT_FRAMES = ("I want to {}", "I need to {}", "I'd like to {}", "I'm trying to {}", "help me {}",
                     "I would like to {}", "please help me {}")
_QUESTION_FRAMES = ("how do I {}?", "how can I {}?", "can you help me {}?", "could you help me {}?",
                    "what do I have to do to {}?", "is it possible to {}?", "can I {}?")
_POLITE_PREFIXES = ("Hello, ", "Hi there, ", "Good morning, ", "Good afternoon, ", "Excuse me, ",
                    "Hello, I hope you are well. ", "Dear support team, ", "Hi, I hope you can help. ")
_POLITE_SUFFIXES = ("Thanks in advance.", "Thank you so much!", "I would really appreciate your help.",
                    "Thank you for your time.", "Many thanks.", "Thanks a lot for your help.")
_POLITE_SWAPS = {"I want to": "I would like to", "I need to": "I would like to", "can you": "could you"}
_COLLOQUIAL_PREFIXES = ("hey ", "hi ", "yo ", "heyy ", "ok so ", "hey there ", "um ", "")
_COLLOQUIAL_SUFFIXES = ("", " thx", " pls", " asap", "!!", " lol", " ty", "")
_COLLOQUIAL_SWAPS = {
    "i want to": "i wanna", "i'd like to": "i wanna", "i would like to": "i wanna", "going to": "gonna",
    "please": "pls", "you": "u", "your": "ur", "i am": "im", "i'm": "im", "don't": "dont",
    "doesn't": "doesnt", "can't": "cant", "haven't": "havent", "hasn't": "hasnt", "didn't": "didnt",
    "isn't": "isnt", "won't": "wont", "thanks": "thx", "because": "cuz", "what is": "whats",
}
_LONG_BEFORE = (
    "I have been a customer for a few years now.",
    "I tried to sort this out on the website but could not find the option.",
    "I am writing from my <device>, so sorry if this is short.",
    "This is the second time I am contacting you about this.",
    "Your chatbot was not able to help me earlier.",
    "I am a bit stressed because I am travelling next week.",
    "A friend recommended your shop and I have been happy so far.",
    "I looked through the help pages <when> but nothing answered my question.",
)
_LONG_AFTER = ("Please let me know what I should do next.", "I would appreciate a quick answer.",
               "Let me know if you need any more details from me.", "I can share more information if needed.",
               "Hope to hear from you soon.", "It is quite urgent for me.")
_TERSE_STOPWORDS = frozenset((
    "i", "i'd", "i'm", "me", "my", "a", "an", "the", "to", "want", "need", "would", "like", "please",
    "can", "could", "you", "your", "how", "do", "does", "is", "it", "of", "for", "and", "that", "what",
    "where", "why", "which", "will", "be", "still", "so", "just", "tell", "help", "am", "are", "was", "with",
    "on", "in", "there", "if", "this", "get", "have", "did", "should", "about", "some", "any", "one", "from",
    "possible", "trying",
))
_TERSE_TAILS = ("help", "asap", "pls", "now", "urgent", "issue", "question")

_PLACEHOLDER_SPLIT = re.compile(r"(\{\{[^{}]*\}\})")
_PLACEHOLDER_OR_WORD = re.compile(r"\{\{[^{}]*\}\}|([A-Za-z]{4,})")
_TOKEN = re.compile(r"\{\{[^{}]*\}\}|\S+")
_SLOT = re.compile(r"<(\w+)>")


def _swapper(swaps: dict[str, str]) -> re.Pattern[str]:
    longest_first = sorted(swaps, key=len, reverse=True)
    return re.compile(r"\b(" + "|".join(re.escape(k) for k in longest_first) + r")\b")


_POLITE_RE = _swapper(_POLITE_SWAPS)
_COLLOQUIAL_RE = _swapper(_COLLOQUIAL_SWAPS)
_SLOT_NAMES = tuple(_SLOTS)
_SLOT_COLUMN = {name: k for k, name in enumerate(_SLOT_NAMES)}


def _pick(options: Sequence[str], u: float) -> str:
    return options[int(u * len(options))]


def _outside_placeholders(text: str, fn: Callable[[str], str]) -> str:
    # Placeholders are entity markers a downstream anonymiser or template filler may look for, so
    # style changes (case, swaps, typos) must never alter them.
    parts = _PLACEHOLDER_SPLIT.split(text)
    parts[::2] = [fn(p) for p in parts[::2]]
    return "".join(parts)


def _terminate(text: str) -> str:
    return text if text[-1] in ".?!" else text + "."


def _capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]


def _polite(text: str, u: Sequence[float]) -> str:
    text = _POLITE_RE.sub(lambda m: _POLITE_SWAPS[m.group(1)], text)
    prefix = _pick(_POLITE_PREFIXES, u[2])
    if prefix.endswith(", ") and not text.startswith(("I ", "I'", "{{")):
        text = text[:1].lower() + text[1:]
    else:
        text = _capitalize(text)
    return f"{prefix}{_terminate(text)} {_pick(_POLITE_SUFFIXES, u[3])}"


def _colloquial(text: str, u: Sequence[float]) -> str:
    drop_you = u[4] < 0.5

    def swap(m: re.Match[str]) -> str:
        word = m.group(1)
        return word if word in ("you", "your") and not drop_you else _COLLOQUIAL_SWAPS[word]

    text = _outside_placeholders(text, lambda s: _COLLOQUIAL_RE.sub(swap, s.lower()))
    text = text.rstrip(".!" if u[5] < 0.5 else ".!?")
    return f"{_pick(_COLLOQUIAL_PREFIXES, u[2])}{text}{_pick(_COLLOQUIAL_SUFFIXES, u[3])}"


def _terse(text: str, u: Sequence[float]) -> str:
    words: list[str] = []
    for token in _TOKEN.findall(text):
        if not token.startswith("{{"):
            token = token.strip(".,?!").lower()
            if not token or token in _TERSE_STOPWORDS:
                continue
        words.append(token)
    text = " ".join(words[:7])
    if len(text.split()) < 3 or u[3] < 0.4:
        text = f"{text} {_pick(_TERSE_TAILS, u[2])}".strip()
    return text


def _long(template: str, u: Sequence[float]) -> str:
    # Runs before slot filling (unlike the other styles) because the context sentences hold slots too.
    text = f"{_pick(_LONG_BEFORE, u[2])} {_terminate(_capitalize(template))}"
    return f"{text} {_pick(_LONG_AFTER, u[3])}" if u[4] < 0.6 else text


def _mangle(word: str, v: float) -> str:
    op_float = v * 3
    op, frac = int(op_float), op_float - int(op_float)
    i = int(frac * (len(word) - 1))
    # Swapping two equal letters would leave the word intact, so drop one instead.
    if op == 0 and word[i] != word[i + 1]:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    return word[:i] + word[i] + word[i:] if op == 2 else word[:i] + word[i + 1 :]


def _typo(text: str, u: Sequence[float]) -> str:
    # The placeholder alternative consumes {{...}} spans whole, so only words outside them match.
    spans = [m.span(1) for m in _PLACEHOLDER_OR_WORD.finditer(text) if m.group(1)]
    if not spans:
        return text
    chosen = {int(u[3] * len(spans)): u[4]}
    if u[2] < 0.4 and len(spans) > 1:
        second = int(u[5] * (len(spans) - 1))
        chosen[second + (second >= min(chosen))] = u[6]
    for index in sorted(chosen, reverse=True):
        start, end = spans[index]
        text = text[:start] + _mangle(text[start:end], chosen[index]) + text[end:]
    return text


_STYLE_FUNCS = {"polite": _polite, "colloquial": _colloquial, "terse": _terse, "typo": _typo}


def _parse_templates(text: str) -> dict[str, dict[str, list[str]]]:
    parsed: dict[str, dict[str, list[str]]] = {}
    entry: dict[str, list[str]] = {}
    for line in text.strip().splitlines():
        if line.startswith("["):
            entry = parsed[line.strip("[]")] = {"cores": [], "templates": [], "responses": []}
        elif line.startswith("= "):
            entry["cores"].append(line[2:])
        elif line.startswith("> "):
            entry["responses"].append(line[2:])
        elif line.startswith("  "):
            entry["responses"][-1] += " " + line.strip()
        else:
            entry["templates"].append(line)
    return parsed


_TEMPLATES = _parse_templates(_TEMPLATE_TEXT)
_RESPONSES = {intent: tuple(entry["responses"]) for intent, entry in _TEMPLATES.items()}
_FRAMES = {"plain": _STATEMENT_FRAMES, "question": _QUESTION_FRAMES,
           "any": _STATEMENT_FRAMES + _QUESTION_FRAMES}
# (cores, whole templates) per intent and pool: plain rows are statements, question rows questions,
# and the other styles transform either.
_POOLS: dict[str, dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    intent: {
        "plain": (tuple(e["cores"]), tuple(t for t in e["templates"] if not t.endswith("?"))),
        "question": (tuple(e["cores"]), tuple(t for t in e["templates"] if t.endswith("?"))),
        "any": (tuple(e["cores"]), tuple(e["templates"])),
    }
    for intent, e in _TEMPLATES.items()
}


def _instruction_template(intent: str, pool: str, u: float) -> str:
    cores, templates = _POOLS[intent][pool]
    x = u * (len(cores) + len(templates))
    k = int(x)
    if k >= len(cores):
        return templates[k - len(cores)]
    # The fractional part of x is itself uniform, so it picks the frame without another draw.
    return _pick(_FRAMES[pool], x - k).format(cores[k])


def _validate(n_rows: int, bias: float, bias_attribute: str, bias_group: str) -> None:
    if not isinstance(n_rows, Integral) or isinstance(n_rows, bool) or n_rows < 1:
        raise DataError(f"n_rows must be an integer >= 1, got {n_rows!r}")
    if not isinstance(bias, Real) or not 0.0 <= float(bias) < 1.0:
        raise DataError(f"bias must be a number in [0, 1), got {bias!r}")
    if bias_attribute not in ATTRIBUTES:
        raise DataError(f"bias_attribute must be one of {', '.join(ATTRIBUTES)}, got {bias_attribute!r}")
    groups = ATTRIBUTES[bias_attribute]
    if bias_group not in groups:
        raise DataError(
            f"bias_group must be one of {', '.join(groups)} for bias_attribute {bias_attribute!r}, "
            f"got {bias_group!r}"
        )


def generate_support_dataset(
    n_rows: int = 10_000,
    seed: int = 0,
    bias: float = 0.0,
    bias_attribute: str = "age_band",
    bias_group: str = "65+",
) -> pd.DataFrame:
    """Generate a synthetic customer-support instruction dataset.

    The same arguments always give an identical DataFrame. Changing ``bias`` only changes the
    ``resolved`` column: every random draw happens regardless of it.

    Args:
        n_rows: Number of rows to generate (>= 1).
        seed: Seed for ``numpy.random.default_rng``.
        bias: In [0, 1). Rows whose ``bias_attribute`` equals ``bias_group`` have their resolution
            probability multiplied by ``1 - bias``; 0 leaves the outcome independent of all attributes.
        bias_attribute: The attribute the bias targets, a key of ``ATTRIBUTES``.
        bias_group: The disadvantaged value of ``bias_attribute``.

    Returns:
        A DataFrame with columns ``id``, ``instruction``, ``response``, ``category``, ``intent``,
        ``age_band``, ``region``, ``customer_tier`` (strings), ``resolved`` (int 0/1) and ``style``
        (the linguistic variation applied to the instruction, one of ``STYLES``).

    Raises:
        DataError: If an argument is out of range; the message names the argument and its value.
    """
    _validate(n_rows, bias, bias_attribute, bias_group)
    n = int(n_rows)
    rng = np.random.default_rng(seed)
    intent_names = tuple(_INTENT_TABLE)
    weights = np.array([row[2] for row in _INTENT_TABLE.values()])
    intent_idx = rng.choice(len(intent_names), size=n, p=weights / weights.sum())
    style_idx = rng.choice(len(STYLES), size=n, p=_STYLE_WEIGHTS)
    attr_idx = {name: rng.choice(len(values), size=n, p=_ATTRIBUTE_WEIGHTS[name])
                for name, values in ATTRIBUTES.items()}
    slot_sizes = np.array([len(_SLOTS[name]) for name in _SLOT_NAMES])
    slot_idx = rng.integers(0, slot_sizes, size=(n, len(_SLOT_NAMES))).tolist()
    aux = rng.random((n, 7)).tolist()  # per-row template, response and style choices
    outcome_u = rng.random(n)

    instructions: list[str] = []
    responses: list[str] = []
    for i, (intent_i, style_i) in enumerate(zip(intent_idx.tolist(), style_idx.tolist(), strict=True)):
        intent, style, u, row_slots = intent_names[intent_i], STYLES[style_i], aux[i], slot_idx[i]
        template = _instruction_template(intent, style if style in ("plain", "question") else "any", u[0])
        if style == "long":
            template = _long(template, u)

        def fill(m: re.Match[str], row_slots: list[int] = row_slots) -> str:
            name = m.group(1)
            return _SLOTS[name][row_slots[_SLOT_COLUMN[name]]]

        text = _SLOT.sub(fill, template)
        if style in _STYLE_FUNCS:
            text = _STYLE_FUNCS[style](text, u)
        instructions.append(" ".join(text.split()))
        responses.append(_SLOT.sub(fill, _pick(_RESPONSES[intent], u[1])))

    base_rate = np.array([row[1] for row in _INTENT_TABLE.values()])[intent_idx]
    target = attr_idx[bias_attribute] == ATTRIBUTES[bias_attribute].index(bias_group)
    resolved = (outcome_u < np.where(target, base_rate * (1.0 - float(bias)), base_rate)).astype(np.int64)

    width = max(6, len(str(n)))
    columns: dict[str, object] = {
        "id": [f"gen-{k:0{width}d}" for k in range(1, n + 1)],
        "instruction": instructions,
        "response": responses,
        "category": [INTENTS[intent_names[k]] for k in intent_idx.tolist()],
        "intent": [intent_names[k] for k in intent_idx.tolist()],
    }
    for name, values in ATTRIBUTES.items():
        columns[name] = [values[k] for k in attr_idx[name].tolist()]
    columns["resolved"] = resolved
    columns["style"] = [STYLES[k] for k in style_idx.tolist()]
    return pd.DataFrame(columns)
